package data

// Synthetic returns n MNIST-shaped samples (28x28, labels 0..9) that a
// small model learns in a few steps: each class is a fixed random pattern,
// each sample its class's pattern plus noise, all drawn from seed. Tests of
// swarm behaviour use it to run without the real dataset, in seconds. Its
// values are normalised already (X, not Pix).
func Synthetic(n int, seed uint64) *Set {
	const rows, cols, classes = 28, 28, 10
	d := rows * cols
	r := Rand(seed)
	protos := make([]float32, classes*d)
	for i := range protos {
		if r.Float64() < 0.2 {
			protos[i] = 1
		}
	}
	s := &Set{X: make([]float32, n*d), Y: make([]uint8, n), N: n, Rows: rows, Cols: cols, Classes: classes}
	for i := 0; i < n; i++ {
		c := r.IntN(classes)
		s.Y[i] = uint8(c)
		for j := 0; j < d; j++ {
			s.X[i*d+j] = protos[c*d+j] + float32(r.NormFloat64()*0.5)
		}
	}
	return s
}
