//go:build race

package bundle

// flipStride is the step between the bytes TestEveryByte flips: under the
// race detector, which makes each Verify some fifteen times slower, every
// third byte.
const flipStride = 3
