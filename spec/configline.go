package spec

// Line returns the line of tandem.yaml where the field at path (e.g.
// providers.alb[0]) or its closest parent is written; 0 when unknown.
func (c *Config) Line(path string) int { return c.pos.line(path) }
