// Package gradient holds everything about the vectors peers exchange: codecs
// that compress a pseudo-gradient (dense, fp16, int8, top-k and their
// compositions), error feedback that keeps what compression drops for the
// next round, a versioned wire format whose decoder validates before it
// allocates, aggregation rules that give identical bits on every peer, and
// the outer (Nesterov) optimizer of DiLoCo. It never touches the network or
// the model graph: everything here is flat []float32.
package gradient
