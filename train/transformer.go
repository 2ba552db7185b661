package train

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/swarmtrain/swarmtrain/train/data"
)

func init() { register("transformer", transformerKind{}) }

// transformerKind is a decoder-only (GPT-style, pre-layer-norm) character
// language model: token and position embeddings, Layers blocks of causal
// multi-head self-attention and a 4x-wide GELU MLP, each behind a layer norm
// and added to the residual stream, a final layer norm and an output layer
// over the vocabulary; the loss is next-token cross-entropy.
//
// It is one fused kernel in plain Go with a hand-written backward pass,
// not a gorgonia graph: its products go to the same deterministic AVX2 gemm
// the conv blocks use, attention runs head by head on all cores, and there
// is no graph machinery per step (see docs/ARCHITECTURE.md for why).
// Every sum has a fixed order whatever the core count, so a step is bit
// identical on any machine with the same build and instruction set.
type transformerKind struct{}

func (transformerKind) validate(s ModelSpec) error {
	for _, f := range []struct {
		name string
		v    int
	}{{"model.layers", s.Layers}, {"model.width", s.Width}, {"model.heads", s.Heads}, {"model.context", s.Context}} {
		if f.v <= 0 {
			return fmt.Errorf("%s: must be > 0, got %d", f.name, f.v)
		}
	}
	if s.Width%s.Heads != 0 {
		return fmt.Errorf("model.heads: %d heads do not divide model.width %d", s.Heads, s.Width)
	}
	if s.Classes < 2 {
		return fmt.Errorf("data.classes: a transformer needs the vocabulary size (swarmtrain data hash DIR --kind text prints it), got %d", s.Classes)
	}
	return nil
}

func (transformerKind) params(s ModelSpec) []param {
	D, V, T, F := s.Width, s.Classes, s.Context, 4*s.Width
	// GPT-2's initialisation: N(0, 0.02), and the projections into the
	// residual stream scaled down by sqrt(2·layers) so the stream's variance
	// does not grow with depth.
	const std = 0.02
	res := std / math.Sqrt(2*float64(s.Layers))
	ps := []param{
		{name: "tok_emb.weight", shape: []int{V, D}, std: std},
		{name: "pos_emb.weight", shape: []int{T, D}, std: std},
	}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("blocks.%d.", l)
		ps = append(ps,
			param{name: p + "ln1.weight", shape: []int{D}, one: true},
			param{name: p + "ln1.bias", shape: []int{D}},
			param{name: p + "attn.qkv.weight", shape: []int{D, 3 * D}, std: std},
			param{name: p + "attn.qkv.bias", shape: []int{3 * D}},
			param{name: p + "attn.proj.weight", shape: []int{D, D}, std: res},
			param{name: p + "attn.proj.bias", shape: []int{D}},
			param{name: p + "ln2.weight", shape: []int{D}, one: true},
			param{name: p + "ln2.bias", shape: []int{D}},
			param{name: p + "mlp.fc.weight", shape: []int{D, F}, std: std},
			param{name: p + "mlp.fc.bias", shape: []int{F}},
			param{name: p + "mlp.proj.weight", shape: []int{F, D}, std: res},
			param{name: p + "mlp.proj.bias", shape: []int{D}},
		)
	}
	return append(ps,
		param{name: "ln_f.weight", shape: []int{D}, one: true},
		param{name: "ln_f.bias", shape: []int{D}},
		param{name: "head.weight", shape: []int{D, V}, std: std},
		param{name: "head.bias", shape: []int{V}},
	)
}

// maxActivationFloats bounds what one batch's saved activations may take
// (2 GiB): a swarm manifest comes from the network, and its model must not
// make a contributor allocate without limit.
const maxActivationFloats = 1 << 29

func (k transformerKind) build(s ModelSpec, batch int, seed uint64, _ modelConfig) (Model, error) {
	perLayer := float64(batch) * float64(s.Context) * (16*float64(s.Width) + 2*float64(s.Heads)*float64(s.Context))
	if acts := perLayer * float64(s.Layers); acts > maxActivationFloats {
		return nil, fmt.Errorf("model: a batch of %d windows would keep %.1f GiB of activations (at most %d GiB): lower train.batch_size, model.context, model.width or model.layers",
			batch, acts*4/(1<<30), maxActivationFloats*4/(1<<30))
	}
	ps := k.params(s)
	n := 0
	for _, p := range ps {
		n += size(p.shape)
	}
	m := &transformer{spec: s, batch: batch, B: batch, T: s.Context, D: s.Width, H: s.Heads, V: s.Classes, F: 4 * s.Width,
		params: make([]float32, n), grads: make([]float32, n)}
	initParams(m.params, ps, seed)
	m.w, m.g = m.views(m.params), m.views(m.grads)
	N := m.B * m.T
	m.layers = make([]tfActs, s.Layers)
	for i := range m.layers {
		a := &m.layers[i]
		a.x, a.ln1, a.att, a.x2, a.ln2 = make([]float32, N*m.D), make([]float32, N*m.D), make([]float32, N*m.D), make([]float32, N*m.D), make([]float32, N*m.D)
		a.m1, a.r1, a.m2, a.r2 = make([]float32, N), make([]float32, N), make([]float32, N), make([]float32, N)
		a.qkv = make([]float32, N*3*m.D)
		a.p = make([]float32, m.B*m.H*m.T*m.T)
		a.u, a.gl, a.th = make([]float32, N*m.F), make([]float32, N*m.F), make([]float32, N*m.F)
	}
	m.xf, m.lnf, m.mf, m.rf = make([]float32, N*m.D), make([]float32, N*m.D), make([]float32, N), make([]float32, N)
	m.logits = make([]float32, N*m.V)
	m.dx, m.dh, m.datt = make([]float32, N*m.D), make([]float32, N*m.D), make([]float32, N*m.D)
	m.dqkv, m.du = make([]float32, N*3*m.D), make([]float32, N*m.F)
	m.dp = make([]float32, m.B*m.H*m.T*m.T)
	return m, nil
}

// tfWeights are one flat vector (parameters or gradients) cut into the
// transformer's tensors, in Layout order.
type tfWeights struct {
	tok, pos     []float32
	blocks       []tfBlock
	lnfW, lnfB   []float32
	headW, headB []float32
}

type tfBlock struct {
	ln1W, ln1B, qkvW, qkvB, projW, projB []float32
	ln2W, ln2B, fcW, fcB, mlpW, mlpB     []float32
}

// tfActs are one block's saved activations for the backward pass.
type tfActs struct {
	x, ln1, m1, r1, qkv, p, att, x2, ln2, m2, r2, u, gl, th []float32
}

// transformer is the transformer's CPU engine: parameters, gradients and
// every activation of a batch in host memory, allocated once.
type transformer struct {
	spec          ModelSpec
	batch         int
	B, T, D, H, V int
	F             int
	params, grads []float32
	w, g          tfWeights

	layers          []tfActs
	xf, lnf, mf, rf []float32
	logits          []float32
	dx, dh, datt    []float32
	dqkv, du, dp    []float32
}

func (m *transformer) views(flat []float32) tfWeights {
	off := 0
	take := func(n int) []float32 { s := flat[off : off+n : off+n]; off += n; return s }
	D, F := m.D, m.F
	var w tfWeights
	w.tok, w.pos = take(m.V*D), take(m.T*D)
	for l := 0; l < m.spec.Layers; l++ {
		w.blocks = append(w.blocks, tfBlock{
			ln1W: take(D), ln1B: take(D), qkvW: take(D * 3 * D), qkvB: take(3 * D), projW: take(D * D), projB: take(D),
			ln2W: take(D), ln2B: take(D), fcW: take(D * F), fcB: take(F), mlpW: take(F * D), mlpB: take(D),
		})
	}
	w.lnfW, w.lnfB, w.headW, w.headB = take(D), take(D), take(D*m.V), take(m.V)
	return w
}

func (m *transformer) Spec() ModelSpec          { return m.spec }
func (m *transformer) NumParams() int           { return len(m.params) }
func (m *transformer) Params() []float32        { return m.params }
func (m *transformer) Grads() []float32         { return m.grads }
func (m *transformer) ReadParams(dst []float32) { copy(dst, m.params) }
func (m *transformer) BatchSize() int           { return m.batch }
func (m *transformer) Close() error             { return nil }

func (m *transformer) WriteParams(p []float32) error {
	if len(p) != len(m.params) {
		return fmt.Errorf("set params: got %d values, model transformer has %d", len(p), len(m.params))
	}
	copy(m.params, p)
	return nil
}

func (m *transformer) Local(ctx context.Context, opt Optimizer, b *Batcher, steps int, before func(int)) (Stats, error) {
	return hostLocal(ctx, m, opt, b, steps, before)
}

// Step runs forward and backward on a batch of BatchSize windows of
// Context+1 tokens and returns the mean next-token loss.
func (m *transformer) Step(b *Batch) (float32, error) {
	if len(b.Tokens) != m.B*(m.T+1) {
		return 0, fmt.Errorf("grad: batch of %d tokens, want %d windows of %d", len(b.Tokens), m.B, m.T+1)
	}
	if err := m.checkTokens(b.Tokens); err != nil {
		return 0, err
	}
	loss, _ := m.forward(b.Tokens, m.B, true)
	m.backward(b.Tokens)
	return float32(loss), nil
}

func (m *transformer) checkTokens(tokens []uint8) error {
	for i, t := range tokens {
		if int(t) >= m.V {
			return fmt.Errorf("token %d at %d is outside the vocabulary of %d", t, i, m.V)
		}
	}
	return nil
}

// forward runs the batch's first rows windows (the rest of the buffers is
// computed but not counted) and returns the mean loss over their
// predictions and how many it got right. With train, dlogits (in place of
// the logits) is set for backward.
func (m *transformer) forward(tokens []uint8, rows int, train bool) (float64, int) {
	B, T, D, H, F := m.B, m.T, m.D, m.H, m.F
	N := B * T
	hd := D / H
	x := m.layers0x()
	// Embeddings.
	parallel(N, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			b, t := i/T, i%T
			tok := int(tokens[b*(T+1)+t])
			row, e, p := x[i*D:(i+1)*D], m.w.tok[tok*D:(tok+1)*D], m.w.pos[t*D:(t+1)*D]
			for j := range row {
				row[j] = e[j] + p[j]
			}
		}
	})
	scale := float32(1 / math.Sqrt(float64(hd)))
	for l := range m.layers {
		a, w := &m.layers[l], &m.w.blocks[l]
		layerNorm(a.ln1, a.m1, a.r1, a.x, w.ln1W, w.ln1B, N, D)
		linear(a.qkv, a.ln1, w.qkvW, w.qkvB, N, D, 3*D)
		// Attention, head by head: S = q·kᵀ/√hd, causal softmax, o = P·v.
		parallel(B*H, func(lo, hi int) {
			for bh := lo; bh < hi; bh++ {
				b, h := bh/H, bh%H
				base := b * T * 3 * D
				q, k, v := a.qkv[base+h*hd:], a.qkv[base+D+h*hd:], a.qkv[base+2*D+h*hd:]
				p := a.p[bh*T*T : (bh+1)*T*T]
				gemm(false, true, T, T, hd, q, 3*D, k, 3*D, false, p, T)
				for i := 0; i < T; i++ {
					softmaxRow(p[i*T:(i+1)*T], i+1, scale)
				}
				gemm(false, false, T, hd, T, p, T, v, 3*D, false, a.att[b*T*D+h*hd:], D)
			}
		})
		copy(a.x2, a.x)
		linearAdd(a.x2, a.att, w.projW, w.projB, N, D, D)
		layerNorm(a.ln2, a.m2, a.r2, a.x2, w.ln2W, w.ln2B, N, D)
		linear(a.u, a.ln2, w.fcW, w.fcB, N, D, F)
		parallel(N*F, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				a.gl[i], a.th[i] = gelu(a.u[i])
			}
		})
		next := m.xf
		if l+1 < len(m.layers) {
			next = m.layers[l+1].x
		}
		copy(next, a.x2)
		linearAdd(next, a.gl, w.mlpW, w.mlpB, N, F, D)
	}
	layerNorm(m.lnf, m.mf, m.rf, m.xf, m.w.lnfW, m.w.lnfB, N, D)
	linear(m.logits, m.lnf, m.w.headW, m.w.headB, N, D, m.V)
	// Cross-entropy per row (parallel), summed in row order.
	V := m.V
	losses := make([]float64, N)
	right := make([]bool, N)
	inv := float32(1) / float32(N)
	parallel(N, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			b, t := i/T, i%T
			y := int(tokens[b*(T+1)+t+1])
			row := m.logits[i*V : (i+1)*V]
			l, pred := crossEntropy(row, y)
			losses[i], right[i] = l, pred == y
			if train {
				mx := row[0]
				for _, v := range row {
					mx = max(mx, v)
				}
				var z float32
				for j, v := range row {
					e := float32(math.Exp(float64(v - mx)))
					row[j] = e
					z += e
				}
				for j := range row {
					row[j] *= inv / z
				}
				row[y] -= inv
			}
		}
	})
	var sum float64
	correct := 0
	for i := 0; i < rows*T; i++ {
		sum += losses[i]
		if right[i] {
			correct++
		}
	}
	return sum / float64(rows*T), correct
}

func (m *transformer) layers0x() []float32 {
	if len(m.layers) == 0 {
		return m.xf
	}
	return m.layers[0].x
}

// backward turns the dlogits forward left into the gradient of every
// parameter (m.grads, overwritten).
func (m *transformer) backward(tokens []uint8) {
	B, T, D, H, F, V := m.B, m.T, m.D, m.H, m.F, m.V
	N := B * T
	hd := D / H
	scale := float32(1 / math.Sqrt(float64(hd)))
	g := &m.g
	// Output layer and final norm.
	linearBack(m.dh, g.headW, g.headB, m.logits, m.lnf, m.w.headW, N, D, V, false)
	clear(m.dx)
	layerNormBack(m.dx, g.lnfW, g.lnfB, m.dh, m.xf, m.mf, m.rf, m.w.lnfW, N, D)
	for l := len(m.layers) - 1; l >= 0; l-- {
		a, w, gw := &m.layers[l], &m.w.blocks[l], &g.blocks[l]
		// MLP: x_out = x2 + gelu(ln2·Wfc + bfc)·Wmlp + bmlp.
		linearBack(m.du, gw.mlpW, gw.mlpB, m.dx, a.gl, w.mlpW, N, F, D, false)
		parallel(N*F, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				m.du[i] *= geluGrad(a.u[i], a.th[i])
			}
		})
		linearBack(m.dh, gw.fcW, gw.fcB, m.du, a.ln2, w.fcW, N, D, F, false)
		layerNormBack(m.dx, gw.ln2W, gw.ln2B, m.dh, a.x2, a.m2, a.r2, w.ln2W, N, D)
		// Attention: x2 = x + att·Wproj + bproj.
		linearBack(m.datt, gw.projW, gw.projB, m.dx, a.att, w.projW, N, D, D, false)
		parallel(B*H, func(lo, hi int) {
			for bh := lo; bh < hi; bh++ {
				b, h := bh/H, bh%H
				base := b * T * 3 * D
				q, k, v := a.qkv[base+h*hd:], a.qkv[base+D+h*hd:], a.qkv[base+2*D+h*hd:]
				dq, dk, dv := m.dqkv[base+h*hd:], m.dqkv[base+D+h*hd:], m.dqkv[base+2*D+h*hd:]
				p := a.p[bh*T*T : (bh+1)*T*T]
				dp := m.dp[bh*T*T : (bh+1)*T*T]
				do := m.datt[b*T*D+h*hd:]
				// dV = Pᵀ·dO, dP = dO·Vᵀ.
				gemm(true, false, T, hd, T, p, T, do, D, false, dv, 3*D)
				gemm(false, true, T, T, hd, do, D, v, 3*D, false, dp, T)
				// dS = P ⊙ (dP − rowsum(dP ⊙ P)), times the scale.
				for i := 0; i < T; i++ {
					pr, dr := p[i*T:(i+1)*T], dp[i*T:(i+1)*T]
					var s float32
					for j := 0; j <= i; j++ {
						s += pr[j] * dr[j]
					}
					for j := 0; j <= i; j++ {
						dr[j] = pr[j] * (dr[j] - s) * scale
					}
					clear(dr[i+1:])
				}
				// dQ = dS·K, dK = dSᵀ·Q.
				gemm(false, false, T, hd, T, dp, T, k, 3*D, false, dq, 3*D)
				gemm(true, false, T, hd, T, dp, T, q, 3*D, false, dk, 3*D)
			}
		})
		linearBack(m.dh, gw.qkvW, gw.qkvB, m.dqkv, a.ln1, w.qkvW, N, D, 3*D, false)
		layerNormBack(m.dx, gw.ln1W, gw.ln1B, m.dh, a.x, a.m1, a.r1, w.ln1W, N, D)
	}
	// Embeddings: rows in order, so every sum has one order.
	clear(g.tok)
	clear(g.pos)
	for i := 0; i < N; i++ {
		b, t := i/T, i%T
		tok := int(tokens[b*(T+1)+t])
		d, ge, gp := m.dx[i*D:(i+1)*D], g.tok[tok*D:(tok+1)*D], g.pos[t*D:(t+1)*D]
		for j, v := range d {
			ge[j] += v
			gp[j] += v
		}
	}
}

// Evaluate returns the mean next-character loss and accuracy over every
// window of s, BatchSize windows at a time (the last batch padded with
// windows not counted).
func (m *transformer) Evaluate(s *data.Set) (loss, accuracy float64, err error) {
	if !s.IsText() || s.Context != m.T {
		return 0, 0, fmt.Errorf("evaluate: a transformer with context %d needs text windows of %d tokens", m.T, m.T+1)
	}
	if s.N == 0 {
		return 0, 0, errors.New("evaluate: empty dataset")
	}
	w := m.T + 1
	buf := make([]uint8, m.B*w)
	var sum float64
	correct := 0
	for start := 0; start < s.N; start += m.B {
		n := min(m.B, s.N-start)
		for i := 0; i < n; i++ {
			copy(buf[i*w:(i+1)*w], s.Window(start+i))
		}
		clear(buf[n*w:])
		if err := m.checkTokens(buf); err != nil {
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		l, c := m.forward(buf, n, false)
		sum += l * float64(n*m.T)
		correct += c
	}
	preds := float64(s.N * m.T)
	return sum / preds, float64(correct) / preds, nil
}

// NextLogits returns the logits of the token that follows context (at most
// Context tokens; the last Context are used when longer).
func (m *transformer) NextLogits(context []uint8) ([]float32, error) {
	if len(context) == 0 {
		return nil, errors.New("generate: empty prompt")
	}
	if len(context) > m.T {
		context = context[len(context)-m.T:]
	}
	buf := make([]uint8, m.B*(m.T+1))
	copy(buf, context)
	if err := m.checkTokens(buf); err != nil {
		return nil, err
	}
	// Causal attention: the padding after the context does not reach it.
	m.forward(buf, 1, false)
	i := len(context) - 1
	return append([]float32(nil), m.logits[i*m.V:(i+1)*m.V]...), nil
}

// LanguageModel is a model that predicts the next token.
type LanguageModel interface {
	Model
	NextLogits(context []uint8) ([]float32, error)
}

// linear is y = x·w + b for x (n × in), w (in × out).
func linear(y, x, w, b []float32, n, in, out int) {
	gemm(false, false, n, out, in, x, in, w, out, false, y, out)
	addBias(y, b, n, out)
}

// linearAdd is y += x·w + b.
func linearAdd(y, x, w, b []float32, n, in, out int) {
	gemm(false, false, n, out, in, x, in, w, out, true, y, out)
	addBias(y, b, n, out)
}

func addBias(y, b []float32, n, out int) {
	parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := y[i*out : (i+1)*out]
			for j, v := range b {
				row[j] += v
			}
		}
	})
}

// linearBack is the backward pass of y = x·w + b given dy: dx = dy·wᵀ
// (added to dx when acc), dw = xᵀ·dy and db = the column sums of dy, in
// row order.
func linearBack(dx, dw, db, dy, x, w []float32, n, in, out int, acc bool) {
	gemm(false, true, n, in, out, dy, out, w, out, acc, dx, in)
	gemm(true, false, in, out, n, x, in, dy, out, false, dw, out)
	clear(db)
	for i := 0; i < n; i++ {
		for j, v := range dy[i*out : (i+1)*out] {
			db[j] += v
		}
	}
}

const lnEps = 1e-5

// layerNorm normalises each row of x (n × d) to zero mean and unit
// variance, then scales by w and shifts by b; it keeps each row's mean and
// 1/std for the backward pass.
func layerNorm(y, mean, rstd, x, w, b []float32, n, d int) {
	parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := x[i*d : (i+1)*d]
			var s float32
			for _, v := range row {
				s += v
			}
			mu := s / float32(d)
			var q float32
			for _, v := range row {
				q += (v - mu) * (v - mu)
			}
			r := float32(1 / math.Sqrt(float64(q/float32(d)+lnEps)))
			mean[i], rstd[i] = mu, r
			out := y[i*d : (i+1)*d]
			for j, v := range row {
				out[j] = (v-mu)*r*w[j] + b[j]
			}
		}
	})
}

// layerNormBack adds the gradient through layerNorm to dx and sets dw, db
// (summed in row order).
func layerNormBack(dx, dw, db, dy, x, mean, rstd, w []float32, n, d int) {
	parallel(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row, g, mu, r := x[i*d:(i+1)*d], dy[i*d:(i+1)*d], mean[i], rstd[i]
			var s1, s2 float32
			for j, v := range row {
				dh := g[j] * w[j]
				s1 += dh
				s2 += dh * (v - mu) * r
			}
			s1 /= float32(d)
			s2 /= float32(d)
			out := dx[i*d : (i+1)*d]
			for j, v := range row {
				xh := (v - mu) * r
				out[j] += r * (g[j]*w[j] - s1 - xh*s2)
			}
		}
	})
	clear(dw)
	clear(db)
	for i := 0; i < n; i++ {
		row, g, mu, r := x[i*d:(i+1)*d], dy[i*d:(i+1)*d], mean[i], rstd[i]
		for j, v := range row {
			dw[j] += g[j] * (v - mu) * r
			db[j] += g[j]
		}
	}
}

// softmaxRow turns the first n scores of row (times scale) into
// probabilities and zeroes the rest (the causal mask).
func softmaxRow(row []float32, n int, scale float32) {
	mx := row[0] * scale
	for _, v := range row[:n] {
		mx = max(mx, v*scale)
	}
	var z float32
	for j, v := range row[:n] {
		e := float32(math.Exp(float64(v*scale - mx)))
		row[j] = e
		z += e
	}
	for j := range row[:n] {
		row[j] /= z
	}
	clear(row[n:])
}

const geluC = 0.7978845608028654 // √(2/π)

// gelu is GELU's tanh form (GPT-2's); it also returns the tanh, which the
// backward pass reuses (tanh was a fifth of a step computed twice).
func gelu(u float32) (float32, float32) {
	x := float64(u)
	t := math.Tanh(geluC * (x + 0.044715*x*x*x))
	return float32(0.5 * x * (1 + t)), float32(t)
}

// geluGrad is gelu's derivative at u, given the tanh gelu returned.
func geluGrad(u, th float32) float32 {
	x, t := float64(u), float64(th)
	return float32(0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*0.044715*x*x))
}
