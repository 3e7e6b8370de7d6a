package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Store keeps uploaded modules, content-addressed by the sha256 of their raw bytes,
// under a data directory, and keeps each compiled for the life of the store. Modules
// survive a restart: OpenStore recompiles them. It is safe for concurrent use.
type Store struct {
	sandbox *Sandbox
	dir     string

	mu      sync.RWMutex
	modules map[string]*Module
	puts    map[string]*put // uploads being compiled, by hash
}

// put is an upload being compiled; concurrent uploads of the same bytes wait for it
// rather than compile them again.
type put struct {
	done chan struct{} // closed when m and err are set
	m    *Module
	err  error
}

// OpenStore opens (creating if needed) the module store in dir and compiles every module
// found there. A file whose bytes no longer match its name is an error: the store does
// not serve a module whose identity it cannot vouch for.
func OpenStore(ctx context.Context, sandbox *Sandbox, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("module store: %w", err)
	}
	s := &Store{sandbox: sandbox, dir: dir, modules: map[string]*Module{}, puts: map[string]*put{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("module store: %w", err)
	}
	for _, e := range entries {
		hexSum, ok := strings.CutSuffix(e.Name(), ".wasm")
		if !ok || e.IsDir() {
			continue // temporary files of an interrupted upload, and anything else
		}
		wasm, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("module store: %w", err)
		}
		if sum := sha256.Sum256(wasm); hex.EncodeToString(sum[:]) != hexSum {
			return nil, fmt.Errorf("module store: %s does not hash to its name: the file was altered", e.Name())
		}
		// Through the compile pool like uploads, but waiting for room: start-up has
		// nothing else to do.
		m, err := sandbox.compile(ctx, wasm, true)
		if err != nil {
			return nil, fmt.Errorf("module store: %s: %w", e.Name(), err)
		}
		s.modules[m.Hash] = m
	}
	return s, nil
}

// Put validates, compiles and durably stores wasm, and returns the compiled module. It
// is idempotent: the same bytes return the module already stored, and concurrent Puts
// of the same bytes compile them once. Uploads of different modules compile at once as
// far as the sandbox's compile pool allows, and fail with CodeCompileBusy beyond it.
// Validation and compile errors are *Error; nothing is written for them.
func (s *Store) Put(ctx context.Context, wasm []byte) (*Module, error) {
	hash := HashOf(wasm)
	s.mu.Lock()
	if m, ok := s.modules[hash]; ok {
		s.mu.Unlock()
		return m, nil
	}
	if p, ok := s.puts[hash]; ok { // the same bytes, being compiled
		s.mu.Unlock()
		select {
		case <-p.done:
			return p.m, p.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p := &put{done: make(chan struct{})}
	s.puts[hash] = p
	s.mu.Unlock()

	p.m, p.err = s.compileAndWrite(ctx, hash, wasm)
	s.mu.Lock()
	if p.err == nil {
		s.modules[hash] = p.m
	}
	delete(s.puts, hash)
	s.mu.Unlock()
	close(p.done)
	return p.m, p.err
}

// compileAndWrite compiles wasm and writes it to the store's directory.
func (s *Store) compileAndWrite(ctx context.Context, hash string, wasm []byte) (*Module, error) {
	m, err := s.sandbox.Compile(ctx, wasm)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(s.path(hash), wasm); err != nil {
		m.Close(ctx)
		return nil, fmt.Errorf("module store: %w", err)
	}
	return m, nil
}

// Get returns the module with the given "sha256:" hash.
func (s *Store) Get(hash string) (*Module, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.modules[hash]
	return m, ok
}

// List returns the stored modules ordered by hash.
func (s *Store) List() []*Module {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Module, 0, len(s.modules))
	for _, m := range s.modules {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	return out
}

// Delete removes a module from disk and memory. Requests already holding it finish;
// the caller must make sure no pipeline still refers to it.
func (s *Store) Delete(ctx context.Context, hash string) error {
	s.mu.Lock()
	m, ok := s.modules[hash]
	delete(s.modules, hash)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("module store: no module %s", hash)
	}
	if err := os.Remove(s.path(hash)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("module store: %w", err)
	}
	return m.Close(ctx)
}

func (s *Store) path(hash string) string {
	return filepath.Join(s.dir, strings.TrimPrefix(hash, "sha256:")+".wasm")
}

// writeFileAtomic writes data to path so that a crash leaves either no file or the whole
// file: write to a temporary file in the same directory, sync, rename, sync the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
