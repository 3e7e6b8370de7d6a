package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
)

func init() {
	register("model", "model pull: download the default model with sha256 checks", model)
}

// defaultModel is the embedded backend's default model, whose files model pull
// fetches.
const defaultModel = "stories260K"

// defaultSource is where the default model's files live: llama2.c's tinyllamas.
const defaultSource = "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K"

// modelFile is one file of the default model, pinned by size and sha256: a pull
// accepts exactly these bytes.
type modelFile struct {
	name   string
	size   int64
	sha256 string
}

var modelFiles = []modelFile{
	{"stories260K.bin", 1056540, "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"},
	{"tok512.bin", 6227, "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"},
}

// pullTimeout bounds a whole pull: the files are about 1 MB.
const pullTimeout = 10 * time.Minute

// defaultDataDir is the host's data directory: $COCOON_DATA_DIR, else /var/lib/cocoon.
func defaultDataDir() string {
	if dir := os.Getenv("COCOON_DATA_DIR"); dir != "" {
		return dir
	}
	return "/var/lib/cocoon"
}

func model(args []string, stdout, stderr io.Writer) error {
	const usageText = "model pull [--data DIR] [--source URL]"
	if len(args) == 0 || args[0] != "pull" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(stdout, "Usage: cocoon-host %s\n", usageText)
			return nil
		}
		return cli.UsageError("usage: cocoon-host " + usageText)
	}
	flags := newFlagSet(usageText, stderr)
	data := flags.String("data", defaultDataDir(), "data directory ($COCOON_DATA_DIR); the model goes to DATA/models/"+defaultModel)
	source := flags.String("source", defaultSource, "URL of the folder that holds the model's files")
	if err := cli.ParseFlags(flags, args[1:]); err != nil {
		return err
	}
	dir := filepath.Join(*data, "models", defaultModel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
	defer cancel()
	base := strings.TrimSuffix(*source, "/")
	var sums strings.Builder
	for _, f := range modelFiles {
		path := filepath.Join(dir, f.name)
		switch ok, err := hasFile(path, f); {
		case err != nil:
			return err
		case ok:
			fmt.Fprintf(stdout, "%s: present, sha256 %s\n", path, f.sha256)
		default:
			if err := download(ctx, base+"/"+f.name, path, f); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: downloaded, sha256 %s\n", path, f.sha256)
		}
		fmt.Fprintf(&sums, "%s  %s\n", f.sha256, f.name)
	}
	return writeAtomic(filepath.Join(dir, embedded.SumsFile), 0o644, func(w io.Writer) error {
		_, err := io.WriteString(w, sums.String())
		return err
	})
}

// hasFile reports whether path already holds f.
func hasFile(path string, f modelFile) (bool, error) {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer file.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(file, f.size+1))
	if err != nil {
		return false, err
	}
	return n == f.size && hex.EncodeToString(h.Sum(nil)) == f.sha256, nil
}

// download fetches url into path, accepting only f's exact bytes. Nothing is left at
// path unless they arrive.
func download(ctx context.Context, url, path string, f modelFile) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("downloading %s: %w", f.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("downloading %s from %s: server answered %s", f.name, url, resp.Status)
	}
	return writeAtomic(path, 0o644, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(resp.Body, f.size+1))
		switch sum := hex.EncodeToString(h.Sum(nil)); {
		case err != nil:
			return fmt.Errorf("downloading %s: %w", f.name, err)
		case n != f.size:
			return fmt.Errorf("downloading %s: got %d bytes, want %d", f.name, n, f.size)
		case sum != f.sha256:
			return fmt.Errorf("downloaded %s has sha256 %s, want %s: refusing it", f.name, sum, f.sha256)
		}
		return nil
	})
}

// writeAtomic writes path (mode perm) through fill: to a temporary file beside it,
// synced, renamed over path only when fill succeeded, and the directory synced, so that
// readers never see a partial file and the new one survives a crash.
func writeAtomic(path string, perm fs.FileMode, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	err = fill(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), perm)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return syncDir(filepath.Dir(path))
}
