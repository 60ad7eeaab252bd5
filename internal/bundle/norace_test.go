//go:build !race

package bundle

// flipStride is the step between the bytes TestEveryByte flips: every one.
const flipStride = 1
