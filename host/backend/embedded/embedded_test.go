package embedded

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/internal/proctest"
)

// modelDir is the stories260K folder: $COCOON_MODEL_DIR, or the shared copy beside
// the repository.
func modelDir() string {
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "..", "shared", "models", "stories260K")
}

var (
	sharedOnce    sync.Once
	sharedBackend *Backend
	sharedErr     error
)

// open returns a Backend on the test model, loaded once for all tests.
func open(t testing.TB) *Backend {
	t.Helper()
	sharedOnce.Do(func() { sharedBackend, sharedErr = New(modelDir()) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedBackend
}

func golden(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(modelDir(), "golden_t0_n200.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

// run generates for req and returns the deltas.
func run(t testing.TB, b *Backend, req *backend.Request) ([]string, backend.Result, error) {
	t.Helper()
	var deltas []string
	res, err := b.Generate(context.Background(), req, func(d string) error {
		if !utf8.ValidString(d) || d == "" {
			t.Errorf("delta %q is empty or not valid UTF-8", d)
		}
		deltas = append(deltas, d)
		return nil
	})
	return deltas, res, err
}

func greedy(maxTokens int, stop ...string) *backend.Request {
	return &backend.Request{MaxTokens: maxTokens, Temperature: ptr(0.0), Stop: stop}
}

func TestGolden(t *testing.T) {
	b := open(t)
	deltas, res, err := run(t, b, greedy(200))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(deltas, ""), golden(t); got != want {
		t.Errorf("greedy 200 tokens:\n got %q\nwant %q", got, want)
	}
	want := backend.Result{FinishReason: "length", Usage: backend.Usage{PromptTokens: 1, CompletionTokens: 200}, Model: "stories260K"}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
}

func TestIdentity(t *testing.T) {
	b := open(t)
	models, err := b.Models(context.Background())
	if err != nil || len(models) != 1 || models[0] != (backend.Model{ID: "stories260K", OwnedBy: "cocoon", ContextLength: 512}) {
		t.Errorf("Models() = %+v, %v", models, err)
	}
	if err := b.Health(context.Background()); err != nil {
		t.Errorf("Health() = %v", err)
	}
	sums, err := readSums(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := b.WeightsSHA256(); got != sums["stories260K.bin"] || len(got) != 64 {
		t.Errorf("WeightsSHA256() = %q, want %q", got, sums["stories260K.bin"])
	}
}

func TestPrompt(t *testing.T) {
	tests := []struct {
		msgs []backend.Message
		want string
	}{
		{nil, ""},
		{[]backend.Message{{Role: "user", Content: "Once upon a time"}}, "Once upon a time"},
		{[]backend.Message{{Role: "system", Content: "Write a story."}, {Role: "user", Content: ""}, {Role: "user", Content: "Tim had a dog."}},
			"Write a story.\nTim had a dog."},
		{[]backend.Message{{Role: "user", Content: "Lily saw"}, {Role: "assistant", Content: "a cat"}}, "Lily saw\na cat"},
	}
	for _, tt := range tests {
		if got := Prompt(tt.msgs); got != tt.want {
			t.Errorf("Prompt(%+v) = %q, want %q", tt.msgs, got, tt.want)
		}
	}
}

func TestStopSequences(t *testing.T) {
	b := open(t)
	gold := golden(t)
	tests := []struct {
		name   string
		stop   []string
		max    int
		want   string
		finish string
	}{
		{"one token", []string{"Lily"}, 200, gold[:strings.Index(gold, "Lily")], "stop"},
		// ", there" spans tokens: the text before it is held back until it cannot be
		// the start of the stop sequence any more.
		{"across tokens", []string{"e, th"}, 200, "Once upon a tim", "stop"},
		{"earliest of several", []string{"park", "girl"}, 200, gold[:strings.Index(gold, "girl")], "stop"},
		{"a prefix that never completes", []string{"Once upon a dog"}, 200, gold, "length"},
		{"never seen", []string{"zebra"}, 200, gold, "length"},
		{"empty stop ignored", []string{""}, 200, gold, "length"},
		{"at the very start", []string{"Once"}, 200, "", "stop"},
		{"held prefix flushed at max_tokens", []string{"upon a dog"}, 2, "Once upon", "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deltas, res, err := run(t, b, greedy(tt.max, tt.stop...))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(deltas, ""); got != tt.want || res.FinishReason != tt.finish {
				t.Errorf("got %q (%s), want %q (%s)", got, res.FinishReason, tt.want, tt.finish)
			}
		})
	}
}

func TestMaxTokensAndWindow(t *testing.T) {
	b := open(t)
	gold := golden(t)
	deltas, res, err := run(t, b, greedy(5))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(deltas, ""); !strings.HasPrefix(gold, got) || len(deltas) != 5 || res.Usage.CompletionTokens != 5 || res.FinishReason != "length" {
		t.Errorf("max_tokens 5: %q in %d deltas, %+v", got, len(deltas), res)
	}

	// A prompt of 500 tokens leaves 12 of the window's 512.
	words := strings.Repeat(" time", 499)[1:] // " time" is one token; the first takes the dummy prefix
	req := &backend.Request{Messages: []backend.Message{{Role: "user", Content: words}}, Temperature: ptr(0.0)}
	_, res, err = run(t, b, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Usage.PromptTokens != 500 || res.Usage.CompletionTokens != 12 || res.FinishReason != "length" {
		t.Errorf("near the window: %+v, want 500 prompt and 12 completion tokens, length", res)
	}

	req.Messages[0].Content = strings.Repeat(" time", 511)[1:]
	_, _, err = run(t, b, req)
	var be *backend.Error
	if !errors.As(err, &be) || be.Code != backend.CodeInvalidRequest || be.Status != 400 || !strings.Contains(be.Message, "the prompt is 512 tokens") {
		t.Errorf("prompt filling the window: error %v, want an invalid request", err)
	}
}

// TestLongPromptRefusedBySize: a prompt too long in bytes to fit the window is refused
// by its length, before it is tokenized (8 MB took about 10 s to tokenize), and a
// prompt that may fit is still tokenized and counted exactly.
func TestLongPromptRefusedBySize(t *testing.T) {
	b := open(t)
	if b.longestToken < 2 || b.longestToken > 64 {
		t.Fatalf("longest token of %d bytes: not the stories260K tokenizer's", b.longestToken)
	}
	huge := strings.Repeat("Once upon a time ", 8<<20/17)
	// Processor time, which a loaded machine does not stretch as it does wall time.
	cpu := proctest.CPU()
	_, _, err := run(t, b, &backend.Request{Messages: []backend.Message{{Role: "user", Content: huge}}})
	if took := proctest.CPU() - cpu; took > 2*time.Second {
		t.Errorf("refusing an 8 MB prompt took %v of processor time: it was tokenized", took)
	}
	var be *backend.Error
	if !errors.As(err, &be) || be.Code != backend.CodeInvalidRequest || be.Status != 400 ||
		!strings.Contains(be.Message, fmt.Sprintf("the prompt is %d bytes, at least", len(huge))) || !strings.Contains(be.Message, "context window of 512 tokens") {
		t.Fatalf("error %v, want an invalid request naming the size", err)
	}

	// The longest prompt the size check lets through is then tokenized.
	edge := strings.Repeat("x", (512-2)*b.longestToken-1)
	if got := b.fewestTokens(len(edge)); got != 511 {
		t.Fatalf("fewestTokens(%d) = %d, want 511", len(edge), got)
	}
	_, _, err = run(t, b, &backend.Request{Messages: []backend.Message{{Role: "user", Content: edge}}})
	if !errors.As(err, &be) || !strings.Contains(be.Message, "tokens; the model's context window") || strings.Contains(be.Message, "bytes") {
		t.Fatalf("a prompt at the size bound: %v, want the tokenizer's count", err)
	}
}

func TestEndOfText(t *testing.T) {
	// Sampling at temperature 1, stories end with BOS well within the window.
	b := open(t)
	ended := 0
	for seed := range int64(10) {
		req := &backend.Request{Seed: ptr(seed), Messages: []backend.Message{{Content: "The end."}}}
		deltas, res, err := run(t, b, req)
		if err != nil {
			t.Fatal(err)
		}
		if res.FinishReason == "stop" {
			ended++
			if res.Usage.PromptTokens+res.Usage.CompletionTokens >= 512 {
				t.Errorf("seed %d: stopped at the window, %+v", seed, res)
			}
			if text := strings.Join(deltas, ""); strings.Contains(text, "<s>") {
				t.Errorf("seed %d: the end-of-text token was emitted: %q", seed, text)
			}
		}
	}
	if ended == 0 {
		t.Error("no story of 10 ended before the window")
	}
}

func TestSeeds(t *testing.T) {
	b := open(t)
	text := func(seed int64, topP float64) string {
		deltas, _, err := run(t, b, &backend.Request{Seed: ptr(seed), TopP: ptr(topP), Temperature: ptr(0.8), MaxTokens: 60,
			Messages: []backend.Message{{Content: "Tom had a red ball."}}})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(deltas, "")
	}
	for _, topP := range []float64{1, 0.9} {
		if a, b := text(3, topP), text(3, topP); a != b {
			t.Errorf("top_p %v: seed 3 gave %q then %q", topP, a, b)
		}
		if a, b := text(3, topP), text(4, topP); a == b {
			t.Errorf("top_p %v: seeds 3 and 4 both gave %q", topP, a)
		}
	}
}

func TestConcurrentGreedyIdentical(t *testing.T) {
	b := open(t)
	want := golden(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			deltas, _, err := run(t, b, greedy(200))
			if got := strings.Join(deltas, ""); err != nil || got != want {
				t.Errorf("concurrent generation: %q, %v", got, err)
			}
		})
	}
	wg.Wait()
}

func TestCancellation(t *testing.T) {
	b := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	res, err := b.Generate(ctx, greedy(0), func(string) error {
		n++
		if n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 3 || res.FinishReason != "cancelled" || res.Usage.CompletionTokens != 3 {
		t.Errorf("cancelled after 3 deltas: %d deltas, %+v, %v", n, res, err)
	}

	errClient := errors.New("client went away")
	res, err = b.Generate(context.Background(), greedy(0), func(string) error { return errClient })
	if !errors.Is(err, errClient) || res.FinishReason != "cancelled" || res.Usage.CompletionTokens != 1 {
		t.Errorf("emit failing: %+v, %v", res, err)
	}

	done, cancelled := context.WithCancel(context.Background())
	cancelled()
	if _, err := b.Generate(done, greedy(0), func(string) error { t.Error("emitted after cancellation"); return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before the start: %v", err)
	}
}

func TestInvalidRequests(t *testing.T) {
	b := open(t)
	tests := []struct {
		name string
		req  backend.Request
		want string
	}{
		{"unknown model", backend.Request{Model: "gpt-4"}, `model "gpt-4" is not served here`},
		{"negative max_tokens", backend.Request{MaxTokens: -1}, "max_tokens"},
		{"temperature too high", backend.Request{Temperature: ptr(2.5)}, "temperature"},
		{"negative temperature", backend.Request{Temperature: ptr(-0.1)}, "temperature"},
		{"NaN temperature", backend.Request{Temperature: ptr(math.NaN())}, "temperature"},
		{"top_p 0", backend.Request{TopP: ptr(0.0)}, "top_p"},
		{"top_p above 1", backend.Request{TopP: ptr(1.5)}, "top_p"},
		{"too many stops", backend.Request{Stop: make([]string, MaxStops+1)}, "at most 16 stop sequences"},
		{"long stop", backend.Request{Stop: []string{strings.Repeat("x", MaxStopBytes+1)}}, "stop sequence"},
		{"invalid UTF-8 stop", backend.Request{Stop: []string{"\xff"}}, "stop sequence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.Generate(context.Background(), &tt.req, func(string) error { return nil })
			var be *backend.Error
			if !errors.As(err, &be) || be.Code != backend.CodeInvalidRequest || !strings.Contains(be.Message, tt.want) {
				t.Errorf("error %v, want an invalid request about %q", err, tt.want)
			}
		})
	}
	if _, err := b.Generate(context.Background(), &backend.Request{Model: "stories260K", MaxTokens: 1}, func(string) error { return nil }); err != nil {
		t.Errorf("naming the served model: %v", err)
	}
}

func TestClose(t *testing.T) {
	b, err := New(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_, err = b.Generate(context.Background(), greedy(0), func(string) error {
		if n++; n == 2 {
			b.Close()
		}
		return nil
	})
	var be *backend.Error
	if !errors.As(err, &be) || be.Code != backend.CodeUnavailable || n != 2 {
		t.Errorf("closed during generation: %d deltas, %v", n, err)
	}
	if err := b.Health(context.Background()); !errors.As(err, &be) || be.Code != backend.CodeUnavailable {
		t.Errorf("Health after Close: %v", err)
	}
	if _, err := b.Generate(context.Background(), greedy(1), func(string) error { return nil }); !errors.As(err, &be) || be.Code != backend.CodeUnavailable {
		t.Errorf("Generate after Close: %v", err)
	}
}

// BenchmarkDecode measures a served generation from BOS: 256 greedy tokens, the
// engine plus the backend's stream handling.
func BenchmarkDecode(b *testing.B) {
	be := open(b)
	req := greedy(256)
	tokens := 0
	for b.Loop() {
		res, err := be.Generate(context.Background(), req, func(string) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		tokens += res.Usage.CompletionTokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkDecodeParallel runs GOMAXPROCS generations at once: on stories260K one
// generation keeps one CPU busy, so concurrent requests are how the backend uses the
// others. tokens/s is the total over all generations.
func BenchmarkDecodeParallel(b *testing.B) {
	be := open(b)
	req := greedy(256)
	var tokens atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := be.Generate(context.Background(), req, func(string) error { return nil })
			if err != nil {
				b.Error(err)
				return
			}
			tokens.Add(int64(res.Usage.CompletionTokens))
		}
	})
	b.ReportMetric(float64(tokens.Load())/b.Elapsed().Seconds(), "tokens/s")
}
