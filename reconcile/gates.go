package reconcile

// The phases between verify and the first traffic: the preview route, smoke
// tests, metric analysis and the approval gate. They run for releases only;
// a heal, an abort or a swap-back goes straight from verify to enable.

// pass is the outcome of a gate that does not apply: the phase ends at once
// and leaves no trace in events or phase times.
var pass = outcome{done: true, silent: true}

// gated reports whether t goes through the release gates.
func gated(t *Transition) bool { return t.Kind == KindRelease }
