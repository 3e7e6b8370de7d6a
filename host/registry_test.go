package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// registryFixture is a sandbox, a store holding spec_example and post_only, and the
// data directory they live in.
type registryFixture struct {
	sandbox   *Sandbox
	store     *Store
	dir       string
	pre, post *Module
}

func newRegistryFixture(t *testing.T) *registryFixture {
	t.Helper()
	ctx := context.Background()
	f := &registryFixture{sandbox: newTestSandbox(t), dir: t.TempDir()}
	var err error
	if f.store, err = OpenStore(ctx, f.sandbox, filepath.Join(f.dir, "modules")); err != nil {
		t.Fatal(err)
	}
	if f.pre, err = f.store.Put(ctx, testdataWasm(t, "spec_example")); err != nil {
		t.Fatal(err)
	}
	if f.post, err = f.store.Put(ctx, testdataWasm(t, "post_only")); err != nil {
		t.Fatal(err)
	}
	return f
}

// testRegistryKey authenticates the fixture's pipeline files.
var testRegistryKey = bytes.Repeat([]byte{0x42}, MinRegistryKey)

func (f *registryFixture) open(t *testing.T) *Registry {
	t.Helper()
	r, err := OpenRegistry(f.sandbox, f.store, filepath.Join(f.dir, "pipelines"), testRegistryKey)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *registryFixture) manifest(t *testing.T, model string) *Manifest {
	return parse(t, `{"abi_version":1,"model":"`+model+`","pre":[{"module":"`+f.pre.Hash+`","config":{"a": 1}}],"post":[{"module":"`+f.post.Hash+`","limits":{"time_ms":500}}]}`)
}

func TestRegistryPersists(t *testing.T) {
	f := newRegistryFixture(t)
	r := f.open(t)
	m := f.manifest(t, "m")
	e, created, err := r.Add(m, "key:alice")
	if err != nil || !created {
		t.Fatalf("Add = %v, %v", created, err)
	}
	if e.ID != m.ID() {
		t.Errorf("entry id %s, manifest id %s", e.ID, m.ID())
	}
	if got := e.Manifest.Pre[0].Limits; got.CallTimeout == 0 || got.MemoryPages == 0 {
		t.Errorf("entry limits %+v: want the defaults filled in", got)
	}
	// The same content again is the same pipeline; another owner joins its owners.
	if again, created, err := r.Add(f.manifest(t, "m"), "key:alice"); err != nil || created || again != e {
		t.Fatalf("Add again = %p, %v, %v; want the same entry", again, created, err)
	}
	if _, created, err := r.Add(f.manifest(t, "m"), "key:bob"); err != nil || created {
		t.Fatalf("Add by bob = %v, %v", created, err)
	}
	other, _, err := r.Add(f.manifest(t, "other"), "key:bob")
	if err != nil {
		t.Fatal(err)
	}

	r2 := f.open(t) // a restart
	got, ok := r2.Get(e.ID)
	if !ok {
		t.Fatalf("pipeline %s lost across a restart", e.ID)
	}
	if want := []string{"key:alice", "key:bob"}; !slices.Equal(got.Owners(), want) {
		t.Errorf("owners = %v, want %v", got.Owners(), want)
	}
	if !got.Created.Equal(e.Created) || string(got.Manifest.Canonical()) != string(e.Manifest.Canonical()) {
		t.Errorf("reloaded entry differs: %+v vs %+v", got, e)
	}
	if _, err := got.Pipeline.Run(context.Background(), []byte(testRequest), storyteller, nil); err != nil {
		t.Errorf("reloaded pipeline: %v", err)
	}
	ids := []string{}
	for _, e := range r2.List() {
		ids = append(ids, e.ID)
	}
	if want := []string{e.ID, other.ID}; !slices.Equal(ids, want) {
		t.Errorf("List = %v, want oldest first %v", ids, want)
	}
	if refs := r2.References(f.post.Hash); len(refs) != 2 {
		t.Errorf("References(post) = %v, want both pipelines", refs)
	}
	if refs := r2.References(hashA); len(refs) != 0 {
		t.Errorf("References(unused) = %v", refs)
	}
}

func TestRegistryDelete(t *testing.T) {
	f := newRegistryFixture(t)
	r := f.open(t)
	e, _, err := r.Add(f.manifest(t, "m"), "key:alice")
	if err != nil {
		t.Fatal(err)
	}
	r.Add(f.manifest(t, "m"), "key:bob")

	if _, err := r.Delete(e.ID, "key:mallory"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("Delete by a stranger: %v, want ErrNotOwner", err)
	}
	if _, err := r.Delete(strings.Repeat("0", 64), "key:alice"); !errors.Is(err, ErrNoPipeline) {
		t.Errorf("Delete of an unknown id: %v, want ErrNoPipeline", err)
	}
	// Alice withdraws: Bob still owns it, so it stays, also after a restart.
	if removed, err := r.Delete(e.ID, "key:alice"); err != nil || removed {
		t.Fatalf("Delete by alice = %v, %v; want kept for bob", removed, err)
	}
	if got, ok := f.open(t).Get(e.ID); !ok || !slices.Equal(got.Owners(), []string{"key:bob"}) {
		t.Fatalf("after alice withdrew: %v, %v", got, ok)
	}
	if removed, err := r.Delete(e.ID, "key:bob"); err != nil || !removed {
		t.Fatalf("Delete by bob = %v, %v", removed, err)
	}
	if _, ok := r.Get(e.ID); ok {
		t.Error("deleted pipeline still listed")
	}
	if _, ok := f.open(t).Get(e.ID); ok {
		t.Error("deleted pipeline back after a restart")
	}
	// Its modules stay: another pipeline may be uploaded with them without bytes.
	if _, ok := f.store.Get(f.pre.Hash); !ok {
		t.Error("module removed with the pipeline")
	}
}

// TestRegistryRefusesAlteredFiles is the machine owner's attack on the data disk: each
// edit of a pipeline file between two starts, such as making oneself an owner (who may
// delete the pipeline and read its failed requests' logs), is refused at the next start
// with the file named.
func TestRegistryRefusesAlteredFiles(t *testing.T) {
	f := newRegistryFixture(t)
	r := f.open(t)
	e, _, err := r.Add(f.manifest(t, "m"), "key:alice")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := r.Add(f.manifest(t, "other"), "key:mallory")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.dir, "pipelines")
	path := filepath.Join(dir, e.ID+".json")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	otherFile, err := os.ReadFile(filepath.Join(dir, other.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var file, mallorys entryFile
	if err := json.Unmarshal(orig, &file); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(otherFile, &mallorys); err != nil {
		t.Fatal(err)
	}
	edit := func(change func(*entryFile)) string {
		f := file
		f.Owners = slices.Clone(file.Owners)
		change(&f)
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const unauthenticated = "the owners do not authenticate"
	for _, tc := range []struct{ name, content, want string }{
		{"model swapped", strings.Replace(string(orig), `"model":"m"`, `"model":"x"`, 1), "does not hash to the file's name"},
		{"no owners", strings.Replace(string(orig), `"owners":["key:alice"]`, `"owners":[]`, 1), "owners must be"},
		{"truncated", string(orig[:len(orig)/2]), "unexpected end of input"},
		{"an owner added", edit(func(f *entryFile) { f.Owners = append(f.Owners, "key:mallory") }), unauthenticated},
		{"the owner replaced", edit(func(f *entryFile) { f.Owners = []string{"key:mallory"} }), unauthenticated},
		{"creation time changed", edit(func(f *entryFile) { f.Created = f.Created.Add(time.Second) }), unauthenticated},
		{"mac of another pipeline", edit(func(f *entryFile) { f.Owners, f.MAC = mallorys.Owners, mallorys.MAC }), unauthenticated},
		{"mac not hex", edit(func(f *entryFile) { f.MAC = "zz" }), unauthenticated},
		{"no mac, as an earlier version wrote it", edit(func(f *entryFile) { f.MAC = "" }), "not authenticated (no mac"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.content == string(orig) {
				t.Fatal("the edit did not apply")
			}
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenRegistry(f.sandbox, f.store, dir, testRegistryKey)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), e.ID+".json") {
				t.Errorf("OpenRegistry: %v, want %q naming the file", err, tc.want)
			}
		})
	}

	// The untouched file under another key (another root sealing secret) is refused too.
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRegistry(f.sandbox, f.store, dir, bytes.Repeat([]byte{1}, MinRegistryKey)); err == nil || !strings.Contains(err.Error(), unauthenticated) {
		t.Errorf("OpenRegistry under another key: %v", err)
	}
	if got, ok := f.open(t).Get(e.ID); !ok || !slices.Equal(got.Owners(), []string{"key:alice"}) {
		t.Errorf("the restored file: %v, %v", got, ok)
	}
	if _, err := OpenRegistry(f.sandbox, f.store, dir, testRegistryKey[:MinRegistryKey-1]); err == nil {
		t.Error("OpenRegistry accepted a short key")
	}
}

// TestRegistryInMemory is the registry of a host that cannot authenticate files: it
// works, and writes and reads nothing.
func TestRegistryInMemory(t *testing.T) {
	f := newRegistryFixture(t)
	r, err := OpenRegistry(f.sandbox, f.store, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := r.Add(f.manifest(t, "m"), "key:alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Add(f.manifest(t, "m"), "key:bob"); err != nil {
		t.Fatal(err)
	}
	if removed, err := r.Delete(e.ID, "key:alice"); err != nil || removed {
		t.Fatalf("Delete = %v, %v", removed, err)
	}
	if got, ok := r.Get(e.ID); !ok || !slices.Equal(got.Owners(), []string{"key:bob"}) {
		t.Errorf("Get = %v, %v", got, ok)
	}
	if removed, err := r.Delete(e.ID, "key:bob"); err != nil || !removed {
		t.Fatalf("Delete = %v, %v", removed, err)
	}
	entries, _ := os.ReadDir(f.dir)
	for _, d := range entries {
		if d.Name() != "modules" {
			t.Errorf("a memory-only registry wrote %s", d.Name())
		}
	}
}

func TestRegistryAddErrors(t *testing.T) {
	f := newRegistryFixture(t)
	r := f.open(t)
	if _, _, err := r.Add(f.manifest(t, "m"), ""); err == nil {
		t.Error("Add without an owner succeeded")
	}
	m := parse(t, `{"abi_version":1,"model":"m","pre":[{"module":"`+hashA+`"}]}`)
	if _, _, err := r.Add(m, "key:alice"); err == nil || !strings.Contains(err.Error(), "is not stored on this host") {
		t.Errorf("Add with a missing module: %v", err)
	}
	if len(r.List()) != 0 {
		t.Error("a failed Add registered a pipeline")
	}
}

// TestRegistryEarlierCanonicalForm: a pipeline stored by a version whose canonical
// manifest lacked a limit this version states (table_elements) is told apart from an
// altered file, and the message gives the id the pipeline has now.
func TestRegistryEarlierCanonicalForm(t *testing.T) {
	f := newRegistryFixture(t)
	e, _, err := f.open(t).Add(f.manifest(t, "m"), "key:alice")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.dir, "pipelines")
	b, err := os.ReadFile(filepath.Join(dir, e.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var file entryFile
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	earlier := regexp.MustCompile(`,"table_elements":\d+`).ReplaceAll(file.Manifest, nil)
	if bytes.Equal(earlier, file.Manifest) {
		t.Fatal("the canonical manifest states no table_elements")
	}
	file.Manifest = earlier
	oldID := strings.TrimPrefix(HashOf(earlier), "sha256:")
	b, err = json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, e.ID+".json")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, oldID+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenRegistry(f.sandbox, f.store, dir, testRegistryKey)
	if err == nil || !strings.Contains(err.Error(), "stored by a version whose canonical manifest differs") || !strings.Contains(err.Error(), "it is now pipeline "+e.ID) {
		t.Errorf("OpenRegistry: %v", err)
	}
}
