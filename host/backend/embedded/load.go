package embedded

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cocoonhost/cocoon/host/internal/llama2"
)

// SumsFile is the name of the checksum file a model folder may hold, in the format
// of sha256sum: one "HEX  NAME" line per file.
const SumsFile = "SHA256SUMS"

// maxSumsBytes bounds SumsFile.
const maxSumsBytes = 64 << 10

// tokenizerName matches llama2.c's tokenizer file names: tokenizer.bin, tok512.bin.
var tokenizerName = regexp.MustCompile(`^(tokenizer|tok[0-9]+)\.bin$`)

// findFiles returns the checkpoint and tokenizer file names in dir: one tokenizer
// (tokenizer.bin or tokN.bin) and one other .bin file, the checkpoint.
func findFiles(dir string) (checkpoint, tokenizer string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("embedded: model folder: %w", err)
	}
	var checkpoints, tokenizers []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir() || !strings.HasSuffix(name, ".bin"):
		case tokenizerName.MatchString(name):
			tokenizers = append(tokenizers, name)
		default:
			checkpoints = append(checkpoints, name)
		}
	}
	if len(checkpoints) != 1 || len(tokenizers) != 1 {
		return "", "", fmt.Errorf("embedded: model folder %s must hold one llama2.c checkpoint (NAME.bin) and one tokenizer (tokenizer.bin or tokN.bin); found checkpoints %q and tokenizers %q",
			dir, checkpoints, tokenizers)
	}
	return checkpoints[0], tokenizers[0], nil
}

// readSums parses dir's SumsFile into file name → lowercase hex sha256. It returns nil
// without error when there is no SumsFile.
func readSums(dir string) (map[string]string, error) {
	f, err := os.Open(filepath.Join(dir, SumsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSumsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("embedded: reading %s: %w", SumsFile, err)
	}
	if len(data) > maxSumsBytes {
		return nil, fmt.Errorf("embedded: %s is larger than %d bytes", SumsFile, maxSumsBytes)
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		// "HEX  NAME" (text mode) or "HEX *NAME" (binary mode).
		sum, name, ok := strings.Cut(text, " ")
		name = strings.TrimPrefix(strings.TrimPrefix(name, " "), "*")
		if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != sha256.Size || name == "" {
			return nil, fmt.Errorf("embedded: %s line %d is not \"SHA256  NAME\"", SumsFile, line)
		}
		sums[name] = strings.ToLower(sum)
	}
	return sums, nil
}

// loadFile parses dir/name with parse while hashing it, and checks the hash against
// sums when sums is not nil. It returns the parsed value and the hex sha256 of the
// file. A file that fails both checks is reported by its hash: that is the cause.
func loadFile[T any](dir, name string, sums map[string]string, parse func(io.Reader, int64) (T, error)) (T, string, error) {
	var zero T
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return zero, "", fmt.Errorf("embedded: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return zero, "", fmt.Errorf("embedded: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return zero, "", fmt.Errorf("embedded: %s is not a regular file", name)
	}
	h := sha256.New()
	v, parseErr := parse(io.TeeReader(f, h), fi.Size())
	if parseErr != nil && sums != nil {
		// Finish the hash, so that a damaged file is reported as not the one listed.
		if _, err := io.Copy(h, f); err != nil {
			return zero, "", fmt.Errorf("embedded: reading %s: %w", name, err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sums != nil {
		want, ok := sums[name]
		switch {
		case !ok:
			return zero, "", fmt.Errorf("embedded: %s has no entry for %s; refusing an unlisted file", SumsFile, name)
		case want != sum:
			return zero, "", fmt.Errorf("embedded: %s does not match %s: its sha256 is %s, %s lists %s", name, SumsFile, sum, SumsFile, want)
		}
	}
	if parseErr != nil {
		return zero, "", fmt.Errorf("embedded: %s: %w", name, parseErr)
	}
	return v, sum, nil
}

// load reads the model in dir.
func load(dir string) (*Backend, error) {
	ckpt, tokName, err := findFiles(dir)
	if err != nil {
		return nil, err
	}
	sums, err := readSums(dir)
	if err != nil {
		return nil, err
	}
	model, sum, err := loadFile(dir, ckpt, sums, llama2.ReadModel)
	if err != nil {
		return nil, err
	}
	tok, _, err := loadFile(dir, tokName, sums, func(r io.Reader, size int64) (*llama2.Tokenizer, error) {
		return llama2.ReadTokenizer(r, size, model.Config.VocabSize)
	})
	if err != nil {
		return nil, err
	}
	longest := 1
	for id := range model.Config.VocabSize {
		longest = max(longest, len(tok.Decode(0, id)))
	}
	return &Backend{
		id:            strings.TrimSuffix(ckpt, ".bin"),
		model:         model,
		tok:           tok,
		longestToken:  longest,
		weightsSHA256: sum,
	}, nil
}
