package openai

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host/backend"
)

// FuzzStream feeds untrusted bytes to the event stream parser and the chunk decoder as
// the body of a response: no panic, and every delta is non-empty, valid UTF-8.
func FuzzStream(f *testing.F) {
	for _, b := range transcripts(f) {
		f.Add(b)
	}
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"\\ud83d\"}}]}\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &stream{emit: func(d string) error {
			if d == "" || !utf8.ValidString(d) {
				t.Fatalf("delta %q", d)
			}
			return nil
		}}
		_ = readStream(bytes.NewReader(body), minLineSize, s)
		s.result(&backend.Request{Messages: []backend.Message{{Content: "x"}}})
	})
}

// FuzzUnquote checks appendUnquoted and joiner against encoding/json: the same text for
// every valid string literal, however the bytes are split between two deltas.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`"plain"`, `"caf\u00e9"`, `"\ud83d\ude00"`, `"\ud83d x"`, `"\n\t\"\\"`, `"😀 é"`, `"\u0000"`} {
		f.Add([]byte(s), uint(3))
	}
	f.Fuzz(func(t *testing.T, lit []byte, cut uint) {
		raw, ok := appendUnquoted(nil, lit)
		var want string
		// The decoder hands over literals without surrounding white space; raw
		// invalid UTF-8 is where the two differ on purpose.
		if json.Unmarshal(lit, &want) == nil && utf8.Valid(lit) && len(bytes.TrimSpace(lit)) == len(lit) {
			if !ok {
				t.Fatalf("%q: refused, encoding/json decodes it", lit)
			}
			got, _ := appendUTF8(nil, raw, true)
			if string(got) != want {
				t.Fatalf("%q: %q, encoding/json says %q", lit, got, want)
			}
		}
		// Splitting the bytes anywhere between two deltas changes nothing.
		whole, _ := appendUTF8(nil, raw, true)
		i := int(cut % uint(len(raw)+1))
		var j joiner
		split := j.push(raw[:i]) + j.push(raw[i:]) + j.flush()
		if split != string(whole) || !utf8.ValidString(split) {
			t.Fatalf("%q split at %d: %q, whole: %q", raw, i, split, whole)
		}
	})
}

// FuzzDecodeChunk checks the fast path of the chunk decoder against encoding/json: on
// every input it takes, encoding/json succeeds and decodes the same chunk. Seeds are
// the data of every event of the server transcripts, and shapes at its edges.
func FuzzDecodeChunk(f *testing.F) {
	for _, b := range transcripts(f) {
		for line := range bytes.Lines(b) {
			if data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:")); ok {
				f.Add(bytes.TrimSpace(data))
			}
		}
	}
	for _, s := range []string{`null`, `{}`, `{"choices":null,"usage":null}`, `{"choices":[null,{}]}`,
		`{"Model":"x"}`, `{"model":"a","model":"b"}`, `{"choices":[{"index":1e0}]}`, `{"choices":[{"index":-0}]}`,
		`{"choices":[{"delta":{"content":"\u00e9\ud83d"}}]}`, `{"choices":[{"delta":{"content":5}}]}`,
		`{"object":"error","message":"x","code":500}`, `{"x":[1,2.5e-3,true,false,null,{"y":"\n"}]} `,
		"{\"model\":\"caf\xc3\"}", `{"usage":{"prompt_tokens":99999999999999999999}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast chunk
		at, ok := scanChunk(data, &fast)
		if !ok {
			return
		}
		var slow chunk
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("%q: the fast path took it, encoding/json says %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", data, fast, slow)
		}
		if at >= 0 {
			if content := fast.Choices[0].Delta.Content; len(fast.Choices) != 1 || !bytes.HasPrefix(data[at:], content) || content[0] != '"' {
				t.Fatalf("%q: content %q said to start at %d", data, content, at)
			}
		}
	})
}

// FuzzDecodeFramedChunk checks chunkDecoder's frame (reframe) against a decoding from
// scratch: a chunk decoded after another one gives the same chunk, or the same
// failure, as the chunk decoded alone. Seeds are pairs of successive events of the
// server transcripts, and such a pair with the second content replaced by strings at
// the edges of JSON's grammar and by what is no one string.
func FuzzDecodeFramedChunk(f *testing.F) {
	var events [][]byte
	for _, b := range transcripts(f) {
		for line := range bytes.Lines(b) {
			if data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:")); ok {
				events = append(events, bytes.TrimSpace(data))
			}
		}
	}
	for i := 1; i < len(events); i++ {
		f.Add(events[i-1], events[i])
	}
	const head, tail = `{"id":"x","choices":[{"index":0,"delta":{"content":`, `},"finish_reason":null}]}`
	for _, content := range []string{`"a"`, `""`, `"\ud83d"`, `"\u00e9\n\""`, "\"caf\xc3\"", "\"a\x01\"", `"a" `, ` "a"`,
		`"a","content":"b"`, `"a"},{"index":1,"delta":{"content":"b"`, `null`, `5`, `"unterminated`, `"\x"`, `"a\"`} {
		f.Add([]byte(head+`"first"`+tail), []byte(head+content+tail))
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		var framed, alone chunkDecoder
		framed.decode(first)
		got, gotErr := framed.decode(second)
		want, wantErr := alone.decode(second)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("%q after %q: %v; alone: %v", second, first, gotErr, wantErr)
		}
		// The decoder reuses the last chunk's choices: no choices may be empty rather
		// than nil.
		for _, c := range []*chunk{got, want} {
			if len(c.Choices) == 0 {
				c.Choices = nil
			}
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q after %q: %+v; alone: %+v", second, first, *got, *want)
		}
	})
}

// chunkEvents are the data of the events of transcript b that are not error events,
// empty or [DONE]: what the stream reader decodes as chunks.
func chunkEvents(b []byte) [][]byte {
	var out [][]byte
	er := newEventReader(bytes.NewReader(b), DefaultMaxLineSize)
	defer er.release()
	for {
		ev, err := er.next()
		if err != nil {
			return out
		}
		data := bytes.TrimSpace(ev.data)
		if !ev.isError && len(data) > 0 && string(data) != "[DONE]" {
			out = append(out, bytes.Clone(data))
		}
	}
}

// transcripts are the server transcripts of testdata.
func transcripts(tb testing.TB) [][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.sse"))
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestServerChunksTakeTheFastPath checks that the chunks of every server transcript
// take scanChunk's path, not encoding/json's: FuzzDecodeChunk holds the fast path to
// encoding/json's results only where it is taken, and a fast path that refused
// everything would pass it. Error events and chunks with bytes that are not UTF-8 (a
// character split across chunks, which JSON's grammar does not allow and
// encoding/json takes) are encoding/json's.
func TestServerChunksTakeTheFastPath(t *testing.T) {
	n := 0
	for _, b := range transcripts(t) {
		for _, data := range chunkEvents(b) {
			if bytes.Contains(data, []byte(`"error"`)) || !utf8.Valid(data) {
				continue
			}
			var c chunk
			if _, ok := scanChunk(data, &c); !ok {
				t.Errorf("the fast path refused %s", data)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d chunks in the transcripts", n)
	}
}

// TestServerTokensReuseTheFrame checks that most content chunks of each server's
// answer decode by the last chunk's frame (reframe), not by a scan of the whole event:
// FuzzDecodeFramedChunk holds the frame to a decoding from scratch only where it is
// taken, and a frame that never matched would pass it. (The transcripts of quirks and
// of split characters change their frame on purpose.)
func TestServerTokensReuseTheFrame(t *testing.T) {
	for _, server := range []string{"vllm", "sglang", "llamacpp", "ollama", "ollama_nousage"} {
		name := filepath.Join("testdata", server+".sse")
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var cd chunkDecoder
		framed, scanned := 0, 0
		for _, data := range chunkEvents(b) {
			if cd.framed && cd.reframe(data) {
				framed++
				continue
			}
			if _, err := cd.decode(data); err == nil && len(cd.c.Choices) == 1 && len(cd.c.Choices[0].Delta.Content) > 2 {
				scanned++
			}
		}
		t.Logf("%s: %d content chunks by the frame, %d scanned whole", name, framed, scanned)
		if framed < scanned {
			t.Errorf("%s: %d content chunks by the frame, %d scanned whole", name, framed, scanned)
		}
	}
}
