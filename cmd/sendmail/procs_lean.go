//go:build shimlean

package main

import "runtime"

// One processor is all a submission uses; with the machine's count the
// runtime starts and parks more threads for a process that lives a few
// milliseconds. Measured side by side (farm-bench, 100 pairs, three runs,
// 2-core VM): 0.95 to 0.98 of the wall time with this, median; with
// GOMAXPROCS=1 in the environment, which applies before the runtime's own
// start, 0.93.
func init() { runtime.GOMAXPROCS(1) }
