package host

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/internal/strictjson"
)

// Errors of Registry.Delete.
var (
	ErrNoPipeline = errors.New("no such pipeline")
	ErrNotOwner   = errors.New("not an owner of the pipeline")
)

// Registry keeps a host's pipelines, by id, durably under a data directory: one file
// per pipeline, written atomically, loaded again at start. Each pipeline has owners, the
// identities of the credentials that uploaded it; only an owner may delete it. The data
// directory is on a disk the machine's owner can write, so each file carries an
// HMAC-SHA256 of the pipeline's id, creation time and owners under a key only the host
// has (see OpenRegistry), and its manifest must hash to its id. It is safe for
// concurrent use.
type Registry struct {
	sandbox *Sandbox
	store   *Store
	dir     string // "" keeps pipelines in memory only
	macKey  []byte

	mu      sync.RWMutex // guards entries; held for writing across a file write
	entries map[string]*Entry
}

// Entry is one registered pipeline. It is immutable: a change of owners replaces it.
type Entry struct {
	// ID is Manifest.ID().
	ID string
	// Manifest is the canonical manifest: limits have every default filled in, configs
	// are compact.
	Manifest *Manifest
	Pipeline *Pipeline
	// Created is when the pipeline was first registered.
	Created time.Time
	owners  []string // sorted, distinct
}

// Owners returns the identities allowed to delete the pipeline, sorted.
func (e *Entry) Owners() []string { return slices.Clone(e.owners) }

// OwnedBy reports whether owner is one of the pipeline's owners.
func (e *Entry) OwnedBy(owner string) bool {
	_, ok := slices.BinarySearch(e.owners, owner)
	return ok
}

// entryFile is the file format of one pipeline: <dir>/<id>.json.
type entryFile struct {
	Manifest json.RawMessage `json:"manifest"` // Manifest.Canonical()
	Owners   []string        `json:"owners"`
	Created  time.Time       `json:"created"`
	// MAC is the lowercase hex of entryMAC: it authenticates the owners, which nothing
	// else on the disk vouches for (the manifest is vouched for by its hash, the id).
	MAC string `json:"mac"`
}

// MinRegistryKey is the least size of a registry's MAC key.
const MinRegistryKey = 32

// entryMAC is HMAC-SHA256 under key of the pipeline's id, creation time and owners:
//
//	lp("cocoon-host pipeline owners v1") || lp(id) || u64be(created, Unix ns) || lp(owner) for each owner, in order
//
// where lp is a 4-byte big-endian length and the bytes. The id binds the manifest (it is
// its hash), so a file cannot lend its owners to another pipeline.
func entryMAC(key []byte, id string, created time.Time, owners []string) []byte {
	m := hmac.New(sha256.New, key)
	lp := func(s string) {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		m.Write([]byte(s))
	}
	lp("cocoon-host pipeline owners v1")
	lp(id)
	m.Write(binary.BigEndian.AppendUint64(nil, uint64(created.UnixNano())))
	for _, o := range owners {
		lp(o)
	}
	return m.Sum(nil)
}

// OpenRegistry opens (creating if needed) the registry in dir and rebuilds every
// pipeline found there from modules in store. macKey (at least MinRegistryKey bytes, a
// secret only the host has: cocoon-host derives it from its root sealing secret)
// authenticates each file's owners. A file whose manifest does not hash to its name,
// whose owners do not authenticate under macKey (altered, written by a version before
// owners were authenticated, or under another key), or that names a module the store
// lacks, is an error naming the file: the host does not serve a pipeline it cannot
// vouch for. With dir "" the registry keeps pipelines in memory only, for a host that
// has no key to authenticate them with; macKey is then unused.
func OpenRegistry(sandbox *Sandbox, store *Store, dir string, macKey []byte) (*Registry, error) {
	r := &Registry{sandbox: sandbox, store: store, dir: dir, macKey: bytes.Clone(macKey), entries: map[string]*Entry{}}
	if dir == "" {
		return r, nil
	}
	if len(macKey) < MinRegistryKey {
		return nil, fmt.Errorf("pipeline registry: a MAC key of at least %d bytes is required, got %d", MinRegistryKey, len(macKey))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pipeline registry: %w", err)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pipeline registry: %w", err)
	}
	for _, f := range files {
		id, ok := strings.CutSuffix(f.Name(), ".json")
		if !ok || f.IsDir() {
			continue // temporary files of an interrupted write, and anything else
		}
		e, err := r.load(id)
		if err != nil {
			return nil, fmt.Errorf("pipeline registry: %s: %w", f.Name(), err)
		}
		r.entries[id] = e
	}
	return r, nil
}

func (r *Registry) load(id string) (*Entry, error) {
	b, err := os.ReadFile(r.path(id))
	if err != nil {
		return nil, err
	}
	var f entryFile
	if err := strictjson.Decode(b, &f); err != nil {
		return nil, err
	}
	m, err := ParseManifest(f.Manifest)
	if err != nil {
		return nil, err
	}
	switch {
	case m.ID() == id:
	case strings.TrimPrefix(HashOf(f.Manifest), "sha256:") == id:
		// The stored bytes are the pipeline's, but this version states its manifest
		// differently (a limit added with its default), which makes it another id.
		return nil, fmt.Errorf("the pipeline was stored by a version whose canonical manifest differs from this one's (it is now pipeline %s): move the file away and let the pipeline's owners upload it again", m.ID())
	default:
		return nil, errors.New("the manifest does not hash to the file's name: the file was altered")
	}
	if len(f.Owners) == 0 || !slices.IsSorted(f.Owners) {
		return nil, errors.New("owners must be a sorted, non-empty list")
	}
	mac, err := hex.DecodeString(f.MAC)
	switch {
	case f.MAC == "":
		return nil, errors.New("the owners are not authenticated (no mac): written by a version before owners were, or altered; move the file away and let the pipeline's owners upload it again")
	case err != nil || !hmac.Equal(mac, entryMAC(r.macKey, id, f.Created, f.Owners)):
		return nil, errors.New("the owners do not authenticate: the file was altered, or written under another root sealing secret")
	}
	owners := slices.Compact(f.Owners)
	p, err := r.sandbox.pipelineFromManifest(m, r.store, owners)
	if err != nil {
		return nil, err
	}
	return &Entry{ID: id, Manifest: m, Pipeline: p, Created: f.Created, owners: owners}, nil
}

// Add registers the pipeline m describes for owner, whose modules must be in the store,
// and reports whether it is new. Adding a registered pipeline is idempotent: it returns
// the existing entry, with owner added to its owners. Errors are *Error with
// CodeInvalidPipeline naming the module (one not in the store, or any check of
// NewPipeline), or a failure to write.
func (r *Registry) Add(m *Manifest, owner string) (e *Entry, created bool, err error) {
	if owner == "" {
		return nil, false, errors.New("pipeline registry: an owner is required")
	}
	// Reparsing the canonical form fills in the limits the id covers, so the entry
	// shows what the pipeline runs with, the same before and after a restart.
	canonical := m.Canonical()
	cm, err := ParseManifest(canonical)
	if err != nil {
		return nil, false, fmt.Errorf("pipeline registry: canonical manifest: %w", err)
	}
	id := cm.ID()

	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.entries[id]; ok {
		if old.OwnedBy(owner) {
			return old, false, nil
		}
		e := *old
		e.owners = slices.Insert(slices.Clone(old.owners), sort.SearchStrings(old.owners, owner), owner)
		if err := r.write(&e); err != nil {
			return nil, false, err
		}
		r.entries[id] = &e
		e.Pipeline.setOwners(e.owners)
		return &e, false, nil
	}
	p, err := r.sandbox.pipelineFromManifest(cm, r.store, []string{owner})
	if err != nil {
		return nil, false, err
	}
	e = &Entry{ID: id, Manifest: cm, Pipeline: p, Created: time.Now().UTC(), owners: []string{owner}}
	if err := r.write(e); err != nil {
		return nil, false, err
	}
	r.entries[id] = e
	return e, true, nil
}

// Get returns the pipeline with the given id.
func (r *Registry) Get(id string) (*Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[id]
	return e, ok
}

// List returns every pipeline, oldest first (by id when created at the same time).
func (r *Registry) List() []*Entry {
	r.mu.RLock()
	out := make([]*Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// References returns the ids of the pipelines that use the module with the given hash,
// sorted: a module may be removed from the store only when there are none.
func (r *Registry) References(hash string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var ids []string
	for id, e := range r.entries {
		if slices.Contains(e.Manifest.Modules(), hash) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Delete withdraws owner from the pipeline's owners and removes the pipeline when none
// is left; it reports whether it did. Errors are ErrNoPipeline, ErrNotOwner, or a failure
// to write. Requests already running the pipeline finish. Its modules stay in the store.
func (r *Registry) Delete(id, owner string) (removed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.entries[id]
	switch {
	case !ok:
		return false, ErrNoPipeline
	case !old.OwnedBy(owner):
		return false, ErrNotOwner
	case len(old.owners) == 1:
		if err := r.remove(id); err != nil {
			return false, err
		}
		delete(r.entries, id)
		return true, nil
	}
	e := *old
	e.owners = slices.DeleteFunc(slices.Clone(old.owners), func(o string) bool { return o == owner })
	if err := r.write(&e); err != nil {
		return false, err
	}
	r.entries[id] = &e
	e.Pipeline.setOwners(e.owners)
	return false, nil
}

// write stores e's file, authenticated; nothing in memory-only mode.
func (r *Registry) write(e *Entry) error {
	if r.dir == "" {
		return nil
	}
	// Without HTML escaping the manifest is stored byte for byte as the id covers it.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	mac := hex.EncodeToString(entryMAC(r.macKey, e.ID, e.Created, e.owners))
	if err := enc.Encode(entryFile{Manifest: e.Manifest.Canonical(), Owners: e.owners, Created: e.Created, MAC: mac}); err != nil {
		return fmt.Errorf("pipeline registry: %w", err)
	}
	if err := writeFileAtomic(r.path(e.ID), buf.Bytes()); err != nil {
		return fmt.Errorf("pipeline registry: %w", err)
	}
	return nil
}

// remove deletes the pipeline's file; nothing in memory-only mode.
func (r *Registry) remove(id string) error {
	if r.dir == "" {
		return nil
	}
	if err := os.Remove(r.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pipeline registry: %w", err)
	}
	return nil
}

func (r *Registry) path(id string) string { return filepath.Join(r.dir, id+".json") }
