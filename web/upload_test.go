package web

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/internal/proctest"
)

// acceptJSON is a parseManifest for decodeUpload that only checks the manifest is JSON.
func acceptJSON(b []byte) error {
	if !json.Valid(b) {
		return invalidf("manifest: invalid JSON")
	}
	return nil
}

func TestDecodeUpload(t *testing.T) {
	long := bytes.Repeat([]byte("cocoon/"), 40_000) // 280 KB: its base64 crosses the reader's buffer many times
	b64 := base64.StdEncoding.EncodeToString
	// escapeAll writes every '/' of s as \/, as PHP does, and every 'A' as \u0041.
	escapeAll := func(s string) string {
		return strings.NewReplacer("/", `\/`, "A", `\u0041`).Replace(s)
	}
	for _, tt := range []struct {
		name     string
		body     string
		manifest string
		modules  map[string][]byte
	}{
		{"plain", `{"manifest":{"a":1},"modules":{"sha256:` + hex64('1') + `":"` + b64([]byte("abc")) + `"}}`,
			`{"a":1}`, map[string][]byte{"sha256:" + hex64('1'): []byte("abc")}},
		{"modules first, white space", " \n{ \"modules\" : { } ,\t\"manifest\" : [1, \"}\"] }\r\n", `[1, "}"]`, map[string][]byte{}},
		{"modules null", `{"manifest":true,"modules":null}`, `true`, map[string][]byte{}},
		{"manifest a number", `{"manifest":12.5e3}`, `12.5e3`, map[string][]byte{}},
		{"manifest with escapes", `{"manifest":{"k\"}":"\\\u0022"}}`, `{"k\"}":"\\\u0022"}`, map[string][]byte{}},
		{"escaped base64, across buffers", `{"modules":{"sha256:` + hex64('2') + `":"` + escapeAll(b64(long)) + `"},"manifest":0}`,
			`0`, map[string][]byte{"sha256:" + hex64('2'): long}},
		{"base64 with escaped newlines", `{"manifest":0,"modules":{"sha256:` + hex64('3') + `":"YW\nJj\r\n"}}`,
			`0`, map[string][]byte{"sha256:" + hex64('3'): []byte("abc")}},
		{"escaped member name", `{"m\u0061nifest":0}`, `0`, map[string][]byte{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var seen []byte
			up, err := decodeUpload(strings.NewReader(tt.body), func(b []byte) error { seen = b; return acceptJSON(b) })
			if err != nil {
				t.Fatal(err)
			}
			if string(up.manifest) != tt.manifest || string(seen) != tt.manifest {
				t.Errorf("manifest %q (parsed %q), want %q", up.manifest, seen, tt.manifest)
			}
			if !reflect.DeepEqual(up.modules, tt.modules) {
				t.Errorf("modules differ: got %d, want %d", len(up.modules), len(tt.modules))
			}
			// encoding/json reads the same body the same way.
			ref, err := referenceUpload([]byte(tt.body))
			if err != nil || string(ref.manifest) != tt.manifest || !reflect.DeepEqual(ref.modules, tt.modules) {
				t.Errorf("encoding/json reads %q, %v", ref.manifest, err)
			}
		})
	}
}

func hex64(c byte) string { return strings.Repeat(string(c), 64) }

func TestDecodeUploadErrors(t *testing.T) {
	mod := `"sha256:` + hex64('a') + `"`
	for _, tt := range []struct {
		name, body, want string
	}{
		{"empty", ``, "upload: empty body: expected JSON"},
		{"an array", `[]`, "upload: invalid JSON at byte 1: upload must be a JSON object"},
		{"truncated", `{"manifest":{"a":`, "upload: invalid JSON: unexpected end of input"},
		{"truncated string", `{"manifest":"abc`, "upload: invalid JSON: unexpected end of input"},
		{"no colon", `{"manifest" 1}`, `upload: invalid JSON at byte 13: expected : after "manifest"`},
		{"no comma", `{"manifest":1 "modules":{}}`, "upload: invalid JSON at byte 15: expected , or } in upload"},
		{"unquoted name", `{manifest:1}`, "upload: invalid JSON at byte 2: expected the name of a member of upload"},
		{"unknown member", `{"manifest":1,"Modules":{}}`, `upload: unknown member "Modules"`},
		{"manifest twice", `{"manifest":1,"manifest":2}`, `upload: member "manifest" given twice`},
		{"module twice", `{"modules":{` + mod + `:"",` + mod + `:""}}`, "modules: sha256:" + hex64('a') + " given twice"},
		{"bad hash", `{"modules":{"md5:1":""}}`, `modules: module "md5:1" is not a module hash`},
		{"module not a string", `{"modules":{` + mod + `:[]}}`, "the bytes of sha256:" + hex64('a') + " must be a base64 string"},
		{"control character", "{\"manifest\":\"a\x01\"}", "control character 0x1 in a string"},
		{"bad escape", `{"modules":{` + mod + `:"\x"}}`, `invalid escape \x in a string`},
		{"bad \\u", `{"modules":{` + mod + `:"\u12g4"}}`, `invalid escape \u in a string`},
		{"not base64", `{"modules":{` + mod + `:"ab$d"}}`, "modules: sha256:" + hex64('a') + " is not standard base64: illegal base64 data at input byte 2"},
		{"data after padding", `{"modules":{` + mod + `:"AA==AAAA"}}`, "is not standard base64: illegal base64 data at input byte 4"},
		{"data after padding, a buffer later", `{"modules":{` + mod + `:"` + strings.Repeat("A", 64<<10-4) + `AA==AAAA"}}`,
			"is not standard base64: illegal base64 data at input byte 65536"},
		{"missing padding", `{"modules":{` + mod + `:"AAA"}}`, "is not standard base64: illegal base64 data at input byte 0"},
		{"module too large", `{"modules":{` + mod + `:"` + strings.Repeat("A", (abi.MaxModuleBytes/3+1)*4) + `"}}`,
			"over the limit of 16777216"},
		{"manifest too large", `{"manifest":"` + strings.Repeat("x", maxManifestBytes) + `"}`, "upload: manifest is over the limit of 4194304 bytes"},
		{"name too long", `{"` + strings.Repeat("x", 300) + `":1}`, "upload: a member name is over 256 bytes"},
		{"trailing data", `{"manifest":1} x`, "upload: invalid JSON at byte 15: unexpected data after the JSON value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeUpload(strings.NewReader(tt.body), acceptJSON)
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, tt.want) {
				t.Fatalf("error %v, want a 400 containing %q", err, tt.want)
			}
		})
	}
}

// TestDecodeUploadManifestFirst checks that a manifest refused by the parser stops the
// decoding before the modules are read.
func TestDecodeUploadManifestFirst(t *testing.T) {
	r := &countingReader{r: strings.NewReader(`{"manifest":{},"modules":{"sha256:` + hex64('b') + `":"` + strings.Repeat("A", 1<<20) + `"}}`)}
	refused := invalidf("manifest: no")
	_, err := decodeUpload(r, func([]byte) error { return refused })
	if err != refused {
		t.Fatalf("error %v, want the parser's", err)
	}
	if r.n > 128<<10 {
		t.Errorf("read %d bytes of a 1 MiB body after its manifest was refused", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// referenceUpload decodes an upload with encoding/json, as the host did before
// decodeUpload: the whole body, then each module's base64.
func referenceUpload(body []byte) (*uploadBody, error) {
	var up struct {
		Manifest json.RawMessage   `json:"manifest"`
		Modules  map[string]string `json:"modules"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&up); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data")
	}
	out := &uploadBody{manifest: up.Manifest, modules: map[string][]byte{}}
	for h, s := range up.Modules {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, err
		}
		out.modules[h] = b
	}
	return out, nil
}

// FuzzDecodeUpload checks decodeUpload against encoding/json: it never panics; what it
// accepts, encoding/json accepts the same way (decodeUpload is stricter: a member
// given twice, case-folded member names and over-long names are refused).
func FuzzDecodeUpload(f *testing.F) {
	mod := `"sha256:` + hex64('c') + `"`
	for _, s := range []string{
		`{"manifest":{"a":[1,2,{"b":"}"}]},"modules":{` + mod + `:"YWJj"}}`,
		`{"modules":null,"manifest":"x\"y"}`,
		`{"modules":{` + mod + `:"YW\/j\u0041A=="}}`,
		` {"manifest" : -1.5e10 } `,
		`{"manifest":[true,false,null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		up, err := decodeUpload(bytes.NewReader(body), acceptJSON)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Message == "" {
				t.Fatalf("error %#v is not a 400 for the client", err)
			}
			return
		}
		ref, rerr := referenceUpload(body)
		if rerr != nil {
			t.Fatalf("decodeUpload accepts what encoding/json refuses (%v)", rerr)
		}
		if !bytes.Equal(up.manifest, ref.manifest) || !reflect.DeepEqual(up.modules, ref.modules) {
			t.Fatalf("decodeUpload gives manifest %q and %d modules, encoding/json %q and %d", up.manifest, len(up.modules), ref.manifest, len(ref.modules))
		}
	})
}

// TestUploadSlots holds MaxUploads uploads open (their bodies not finished) and checks
// that the next one is refused at once, before its body is read, with a 429 naming
// the limit; and that the held ones then complete.
func TestUploadSlots(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *recorder) { c.MaxUploads = 2 })
	type held struct {
		w    *io.PipeWriter
		done chan response
	}
	var open []held
	for range 2 {
		r, w := io.Pipe()
		h := held{w, make(chan response, 1)}
		req, _ := http.NewRequest("POST", f.http.URL+"/v1/pipelines", r)
		setAuth(req, ownerKey)
		go func() {
			res, err := f.http.Client().Do(req)
			if err != nil {
				h.done <- response{status: -1, body: []byte(err.Error())}
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			h.done <- response{res.StatusCode, res.Header, b}
		}()
		w.Write([]byte(`{"manifest":` + emptyPipeline))
		open = append(open, h)
	}
	// The handler takes its slot before it reads the body; wait until both have.
	waitFor(t, func() bool { return len(f.server.uploads) == 2 })

	// A third, with a body that would never end: refused without reading it.
	r, w := io.Pipe()
	defer w.Close()
	req, _ := http.NewRequest("POST", f.http.URL+"/v1/pipelines", r)
	setAuth(req, ownerKey)
	res, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "2" ||
		!strings.Contains(string(b), `"code":"too_many_uploads"`) ||
		!strings.Contains(string(b), "the host is receiving 2 pipeline uploads at once, its limit") {
		t.Errorf("third upload: %d %v %s", res.StatusCode, res.Header, b)
	}
	for _, h := range open {
		h.w.Write([]byte(`}`))
		h.w.Close()
		if res := <-h.done; res.status != 200 && res.status != 201 {
			t.Errorf("held upload: %d %s", res.status, res.body)
		}
	}
	if n := len(f.server.uploads); n != 0 {
		t.Errorf("%d upload slots still taken", n)
	}
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 10 s")
}

func TestUploadCompileBusy(t *testing.T) {
	f := newFixture(t)
	hash := "sha256:" + hex64('d')
	w := httptest.NewRecorder()
	f.server.writeError(w, httptest.NewRequest("POST", "/v1/pipelines", nil),
		moduleError(hash, &host.Error{Code: host.CodeCompileBusy, Status: 429, RetryAfter: 3, Message: "the host is compiling other modules"}))
	if w.Code != 429 || w.Header().Get("Retry-After") != "3" ||
		!strings.Contains(w.Body.String(), `"type":"rate_limit_error"`) ||
		!strings.Contains(w.Body.String(), "module "+hash+": the host is compiling other modules") {
		t.Errorf("%d %v %s", w.Code, w.Header(), w.Body)
	}
}

// TestConcurrentUploadsMemory performs issue 10 item 12's attack: eight concurrent
// uploads of 63 MiB bodies (three modules of 15.75 MiB each, in base64), in a child
// process whose peak resident memory is the server's (the clients generate their
// bodies as they send them). Before the bound and the streaming decoder this took the
// process 1.2 GB above its baseline; now two are received at once, each holding its
// decoded modules, and the rest are refused at once.
func TestConcurrentUploadsMemory(t *testing.T) {
	if testing.Short() || raceDetector {
		t.Skip("sends half a gigabyte and measures the server's memory: meaningless under the race detector")
	}
	var peak int64
	var statuses string
	if _, err := fmt.Sscanf(proctest.Child(t, "TestConcurrentUploadsMemoryChild"), "%d %s", &peak, &statuses); err != nil {
		t.Fatal(err)
	}
	t.Logf("peak %d MiB above the baseline; statuses %s", peak>>20, statuses)
	// Two uploads of 47 MiB of modules each, with room for the garbage collector.
	if peak > 256<<20 {
		t.Errorf("eight concurrent 63 MiB uploads took %d MiB", peak>>20)
	}
	if n := strings.Count(statuses, "429"); n < 6 || strings.Count(statuses, "400") != 8-n {
		t.Errorf("statuses %s: want the uploads beyond two refused with 429, and the others read and refused (400: the modules are not WebAssembly)", statuses)
	}
}

// TestConcurrentUploadsMemoryChild is the child process of TestConcurrentUploadsMemory.
func TestConcurrentUploadsMemoryChild(t *testing.T) {
	if !proctest.IsChild("TestConcurrentUploadsMemoryChild") {
		t.Skip("run by TestConcurrentUploadsMemory")
	}
	f := newFixture(t)
	const moduleBytes = 63 << 20 / 4 // three modules in base64: 63 MiB
	hashes := make([]string, 3)
	for i := range hashes {
		hashes[i] = host.HashOf(pseudoRandom(i, moduleBytes))
	}
	manifest := `{"abi_version":1,"model":"stories260K","pre":[{"module":"` + strings.Join(hashes, `"},{"module":"`) + `"}]}`
	runtime.GC()
	debug.FreeOSMemory()
	base := proctest.KiB(t, "VmRSS")
	var wg sync.WaitGroup
	statuses := make([]string, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", f.http.URL+"/v1/pipelines", uploadBodyReader(manifest, hashes, moduleBytes))
			setAuth(req, ownerKey)
			res, err := f.http.Client().Do(req)
			if err != nil {
				statuses[i] = "error"
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			statuses[i] = strconv.Itoa(res.StatusCode)
		}()
	}
	wg.Wait()
	fmt.Printf("RESULT %d %s\n", (proctest.KiB(t, "VmHWM")-base)<<10, strings.Join(statuses, ","))
}

// pseudoRandom returns n bytes of a deterministic stream for module i.
func pseudoRandom(i, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(i)})
	r.Read(b)
	return b
}

// uploadBodyReader generates an upload body as it is read: the manifest, then each
// module's base64, produced a megabyte at a time, so the client holds no copy.
func uploadBodyReader(manifest string, hashes []string, moduleBytes int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		fmt.Fprintf(pw, `{"manifest":%s,"modules":{`, manifest)
		for i, h := range hashes {
			if i > 0 {
				pw.Write([]byte(","))
			}
			fmt.Fprintf(pw, "%q:\"", h)
			enc := base64.NewEncoder(base64.StdEncoding, pw)
			r := rand.NewChaCha8([32]byte{byte(i)})
			buf := make([]byte, 1<<20)
			for left := moduleBytes; left > 0; left -= len(buf) {
				r.Read(buf[:min(len(buf), left)])
				if _, err := enc.Write(buf[:min(len(buf), left)]); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			enc.Close()
			pw.Write([]byte(`"`))
		}
		pw.Write([]byte("}}"))
		pw.Close()
	}()
	return pr
}

// BenchmarkDecodeUpload decodes a 16 MiB module's upload as it arrives, against
// encoding/json and encoding/base64 on the whole body (the host's decoding before) in
// the same run (x-encoding-json).
//
//	go test -run '^$' -bench DecodeUpload -benchmem ./web/
func BenchmarkDecodeUpload(b *testing.B) {
	module := pseudoRandom(0, abi.MaxModuleBytes)
	body := []byte(`{"manifest":` + emptyPipeline + `,"modules":{"` + host.HashOf(module) + `":"` + base64.StdEncoding.EncodeToString(module) + `"}}`)
	var reference float64
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := referenceUpload(body); err != nil {
				b.Fatal(err)
			}
		}
		reference = float64(b.Elapsed()) / float64(b.N)
	})
	b.Run("streaming", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := decodeUpload(bytes.NewReader(body), acceptJSON); err != nil {
				b.Fatal(err)
			}
		}
		if reference > 0 {
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/reference, "x-encoding-json")
		}
	})
}
