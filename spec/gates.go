package spec

// Gates are the checks a release passes between verify and the first
// traffic: smoke tests on the target group, metric analysis and a manual
// approval. A gate that is not set is not run.
type Gates struct {
	Smoke    *SmokeGate    `yaml:"smoke" json:"smoke,omitempty"`
	Analysis *AnalysisGate `yaml:"analysis" json:"analysis,omitempty"`
	Approval *ApprovalGate `yaml:"approval" json:"approval,omitempty"`
}
