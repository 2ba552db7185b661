package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/swarmtrain/swarmtrain/train/data"
)

// Generate continues prompt by n characters from m, sampling each from the
// softmax of the logits divided by temperature (0: always the most likely),
// with a PRNG seeded by seed. vocab maps tokens to characters (the text
// dataset's).
func Generate(m LanguageModel, vocab []rune, prompt string, n int, temperature float64, seed uint64) (string, error) {
	if temperature < 0 || math.IsNaN(temperature) {
		return "", fmt.Errorf("--temperature: must be >= 0, got %v", temperature)
	}
	ctx := data.Encode(vocab, prompt)
	r := data.Rand(seed)
	var out strings.Builder
	for i := 0; i < n; i++ {
		logits, err := m.NextLogits(ctx)
		if err != nil {
			return "", err
		}
		next := 0
		if temperature == 0 {
			for j, v := range logits {
				if v > logits[next] {
					next = j
				}
			}
		} else {
			mx := logits[0]
			for _, v := range logits {
				mx = max(mx, v)
			}
			p := make([]float64, len(logits))
			var z float64
			for j, v := range logits {
				p[j] = math.Exp(float64(v-mx) / temperature)
				z += p[j]
			}
			u := r.Float64() * z
			for next = 0; next < len(p)-1 && u >= p[next]; next++ {
				u -= p[next]
			}
		}
		if next < len(vocab) {
			out.WriteRune(vocab[next])
		}
		ctx = append(ctx, uint8(next))
	}
	return out.String(), nil
}
