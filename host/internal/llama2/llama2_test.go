package llama2

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// modelDir is the stories260K folder the tests use: $COCOON_MODEL_DIR, or the shared
// copy beside the repository.
func modelDir(t testing.TB) string {
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "..", "shared", "models", "stories260K")
}

func loadModel(t testing.TB) (*Model, *Tokenizer) {
	t.Helper()
	dir := modelDir(t)
	f, err := os.Open(filepath.Join(dir, "stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadModel(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	tf, err := os.Open(filepath.Join(dir, "tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	tfi, err := tf.Stat()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ReadTokenizer(tf, tfi.Size(), m.Config.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

// generate runs run.c's generation loop: greedy or sampled steps from the prompt.
func generate(m *Model, tok *Tokenizer, prompt string, steps int, s *Sampler) string {
	tokens := tok.Encode(prompt, true, false)
	st := m.NewState(steps)
	var out strings.Builder
	token := tokens[0]
	for pos := 0; pos < steps; pos++ {
		logits := st.Forward(token, pos)
		var next int
		if pos < len(tokens)-1 {
			next = tokens[pos+1]
		} else {
			next = s.Sample(logits)
		}
		if next == BOS {
			break
		}
		out.WriteString(tok.Decode(token, next))
		token = next
	}
	return out.String()
}

func TestGolden(t *testing.T) {
	m, tok := loadModel(t)
	want, err := os.ReadFile(filepath.Join(modelDir(t), "golden_t0_n200.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := generate(m, tok, "", 200, NewSampler(0, 0, 1))
	if got != string(want) {
		t.Errorf("greedy 200 steps:\n got %q\nwant %q", got, want)
	}
}
