package gradient

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func honestUpdates(n, dim int) []Update {
	base := randVec(100, dim)
	ups := make([]Update, n)
	for i := range ups {
		noise := randVec(uint64(200+i), dim)
		v := make([]float32, dim)
		for j := range v {
			v[j] = base[j] + noise[j]
		}
		ups[i] = Update{ID: string(rune('a' + i)), Vec: v, Weight: 1}
	}
	return ups
}

func mean(ups []Update) []float64 {
	out := make([]float64, len(ups[0].Vec))
	for _, u := range ups {
		for j, x := range u.Vec {
			out[j] += float64(x) / float64(len(ups))
		}
	}
	return out
}

func dist(a []float32, b []float64) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - b[i]
		s += d * d
	}
	return math.Sqrt(s)
}

// TestRobustRulesBoundOneBadUpdate: one of five updates is scaled by 1000 or
// is all NaN. The stated bounds:
//   - clip-mean: within 2·m/5 of the honest mean, m the median norm (the
//     clipped attacker contributes at most m/5 and the honest mean is
//     reweighted by 4/5, which moves it by at most its norm/5 <= m/5);
//   - median, and trimmed-mean trimming 1 of 5 per side: within
//     sqrt(Σ_i ||h_i − mean||²) of the honest mean (every coordinate's
//     result lies inside the honest values' range).
func TestRobustRulesBoundOneBadUpdate(t *testing.T) {
	const dim = 5000
	for _, attack := range []string{"x1000", "nan"} {
		ups := honestUpdates(5, dim)
		honest := mean(ups[:4])
		bad := ups[4].Vec
		for j := range bad {
			if attack == "nan" {
				bad[j] = float32(math.NaN())
			} else {
				bad[j] *= 1000
			}
		}
		var spread float64
		for _, u := range ups[:4] {
			d := dist(u.Vec, honest)
			spread += d * d
		}
		for _, rule := range []string{ClipMean, Median, TrimmedMean} {
			res, err := Aggregate(rule, ups, 0.2)
			if err != nil {
				t.Fatal(err)
			}
			got := dist(res.Vec, honest)
			var bound float64
			if rule == ClipMean {
				norms := []float64{}
				for _, u := range ups {
					if Finite(u.Vec) {
						norms = append(norms, Norm(u.Vec))
					}
				}
				bound = 2 * medianInPlace(norms) / 5
			} else {
				bound = math.Sqrt(spread)
			}
			t.Logf("%s %s: distance to honest mean %.4g (bound %.4g, honest norm %.4g)", attack, rule, got, bound, Norm(ups[0].Vec))
			if got > bound {
				t.Errorf("%s %s: %.4g from the honest mean, bound %.4g", attack, rule, got, bound)
			}
			if attack == "nan" && !slices.Equal(res.Excluded, []string{"e"}) {
				t.Errorf("%s %s: excluded %v", attack, rule, res.Excluded)
			}
		}
		// The plain mean is not robust: the test would be vacuous otherwise.
		if res, _ := Aggregate(Mean, ups, 0); attack == "x1000" && dist(res.Vec, honest) < 10*Norm(ups[0].Vec) {
			t.Errorf("plain mean resisted a x1000 update: the attack is too weak to test anything")
		}
	}
}

func TestAggregationIsOrderIndependentToTheBit(t *testing.T) {
	ups := honestUpdates(7, 3001)
	for i := range ups {
		ups[i].Weight = float64(1 + i%3)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, rule := range []string{Mean, ClipMean, TrimmedMean, Median} {
		want, err := Aggregate(rule, ups, 0.2)
		if err != nil {
			t.Fatal(err)
		}
		for p := 0; p < 5; p++ {
			shuffled := slices.Clone(ups)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			got, _ := Aggregate(rule, shuffled, 0.2)
			for j := range want.Vec {
				if math.Float32bits(got.Vec[j]) != math.Float32bits(want.Vec[j]) {
					t.Fatalf("%s: permutation %d changes coordinate %d", rule, p, j)
				}
			}
		}
	}
}

func TestAggregateRejectsBadSets(t *testing.T) {
	a := Update{ID: "a", Vec: []float32{1, 2}}
	if _, err := Aggregate(Mean, []Update{a, a}, 0); err == nil {
		t.Error("two updates from one peer accepted")
	}
	if _, err := Aggregate(Mean, []Update{a, {ID: "b", Vec: []float32{1}}}, 0); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := Aggregate("mode", []Update{a}, 0); err == nil {
		t.Error("unknown rule accepted")
	}
	if _, err := Aggregate(Mean, []Update{{ID: "n", Vec: []float32{float32(math.Inf(1))}}}, 0); err == nil {
		t.Error("all-non-finite set aggregated")
	}
	if _, err := Aggregate(Mean, []Update{a, {ID: "w", Vec: []float32{1, 2}, Weight: math.NaN()}}, 0); err == nil || !strings.Contains(err.Error(), "from w") {
		t.Errorf("NaN weight: %v", err)
	}
}

func TestOuterNesterovMatchesTheFormulaAndMirrors(t *testing.T) {
	o, _ := NewOuter(2, 0.7, 0.9)
	p := []float32{1, 1}
	o.Step(p, []float32{0.1, -0.2})
	// v = g; p -= lr*(g + mu*g) = lr*1.9*g
	want := []float32{1 - 0.7*1.9*0.1, 1 + 0.7*1.9*0.2}
	for i := range p {
		if math.Abs(float64(p[i]-want[i])) > 1e-6 {
			t.Fatalf("step: %v want %v", p, want)
		}
	}
	mirror, _ := NewOuter(2, 0.7, 0.9)
	mirror.SetState(o.State())
	q := slices.Clone(p)
	o.Step(p, []float32{0.3, 0.3})
	mirror.Step(q, []float32{0.3, 0.3})
	if !slices.Equal(p, q) {
		t.Fatal("a mirrored optimizer diverged")
	}
	if _, err := NewOuter(2, -1, 0.9); err == nil {
		t.Fatal("negative lr accepted")
	}
}
