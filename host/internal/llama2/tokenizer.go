package llama2

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Token ids every llama2.c tokenizer reserves.
const (
	BOS = 1 // beginning of a sequence; TinyStories models also emit it between stories
	EOS = 2 // end of a sequence
)

// Byte-fallback pieces: "<0x00>" to "<0xFF>" have ids byteBase to byteBase+255, and
// text with no piece of its own encodes as those bytes.
const byteBase = 3

// maxTokenizerBytes bounds a tokenizer file; Llama 2's 32,000-piece tokenizer is
// about 430 KB.
const maxTokenizerBytes = 64 << 20

// maxPieceBytes bounds the length of one piece.
const maxPieceBytes = 1 << 10

// Tokenizer is a SentencePiece BPE tokenizer in the llama2.c format. It is immutable and
// safe for concurrent use.
type Tokenizer struct {
	pieces []string  // by token id, as in the file
	text   []string  // by token id, what the token decodes to: the byte for byte tokens
	scores []float32 // merge priority by token id: higher merges first
	ids    map[string]int
}

// ReadTokenizer reads a llama2.c tokenizer file (tokenizer.bin, tok512.bin) of size
// bytes from r for a model with vocabSize tokens: an int32 maximum piece length, then
// for each token a float32 score, an int32 length and the piece's bytes. The file must
// hold exactly vocabSize pieces including the 256 byte-fallback pieces "<0x00>" to
// "<0xFF>" at ids 3 to 258, as SentencePiece's byte_fallback lays them out.
func ReadTokenizer(r io.Reader, size int64, vocabSize int) (*Tokenizer, error) {
	if size < 4 || size > maxTokenizerBytes {
		return nil, fmt.Errorf("llama2: tokenizer is %d bytes; a llama2.c tokenizer has 4 to %d", size, maxTokenizerBytes)
	}
	if vocabSize < byteBase+256 || vocabSize > maxVocab {
		return nil, fmt.Errorf("llama2: vocabulary of %d tokens is too small for byte fallback", vocabSize)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("llama2: reading tokenizer: %w", noEOF(err))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen < 1 || maxLen > maxPieceBytes {
		return nil, fmt.Errorf("llama2: not a llama2.c tokenizer: maximum piece length %d is outside 1..%d", maxLen, maxPieceBytes)
	}
	t := &Tokenizer{
		pieces: make([]string, vocabSize),
		text:   make([]string, vocabSize),
		scores: make([]float32, vocabSize),
		ids:    make(map[string]int, vocabSize),
	}
	rest := data[4:]
	for id := range vocabSize {
		if len(rest) < 8 {
			return nil, fmt.Errorf("llama2: tokenizer is truncated at piece %d of %d", id, vocabSize)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(rest))
		n := int32(binary.LittleEndian.Uint32(rest[4:]))
		rest = rest[8:]
		if n < 0 || n > maxLen {
			return nil, fmt.Errorf("llama2: not a llama2.c tokenizer: piece %d has length %d, outside 0..%d", id, n, maxLen)
		}
		if int(n) > len(rest) {
			return nil, fmt.Errorf("llama2: tokenizer is truncated at piece %d of %d", id, vocabSize)
		}
		piece := string(rest[:n])
		rest = rest[n:]
		t.pieces[id], t.text[id], t.scores[id] = piece, piece, score
		if _, dup := t.ids[piece]; !dup {
			t.ids[piece] = id
		}
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("llama2: tokenizer has %d bytes after its %d pieces: not the tokenizer of this model", len(rest), vocabSize)
	}
	for b := range 256 {
		id := byteBase + b
		if want := fmt.Sprintf("<0x%02X>", b); t.pieces[id] != want {
			return nil, fmt.Errorf("llama2: tokenizer piece %d is %q, want the byte-fallback piece %q", id, t.pieces[id], want)
		}
		t.text[id] = string([]byte{byte(b)})
	}
	return t, nil
}

// Decode returns the text of token, which follows prev, as run.c prints it: a byte
// token is its raw byte (so one character may span several tokens), and the leading
// space of a piece right after BOS is dropped, since encoding added it.
func (t *Tokenizer) Decode(prev, token int) string {
	s := t.text[token]
	if prev == BOS && len(s) > 0 && s[0] == ' ' && !t.isByte(token) {
		s = s[1:]
	}
	return s
}

func (t *Tokenizer) isByte(id int) bool { return id >= byteBase && id < byteBase+256 }

// Encode returns the tokens of text as run.c's encode does it: BOS first if bos, a
// dummy-prefix " " piece before non-empty text (SentencePiece's add_dummy_prefix),
// each UTF-8 character as its piece or, without one, as byte-fallback tokens, then
// merges of adjacent pairs into the vocabulary's pieces, highest score first and
// leftmost first among equal scores; EOS last if eos. Invalid UTF-8 is encoded byte by
// byte. It takes O(n log n) time for n bytes of text: run.c rescans every pair after
// each merge, which is quadratic, but picks the same merges.
func (t *Tokenizer) Encode(text string, bos, eos bool) []int {
	tokens := make([]int, 0, len(text)+3)
	if bos {
		tokens = append(tokens, BOS)
	}
	if text != "" {
		tokens = t.appendChunk(tokens, " ")
	}
	// Split text as run.c does: a chunk is a byte that is not a UTF-8 continuation byte
	// followed by at most three continuation bytes.
	for i := 0; i < len(text); {
		j := i + 1
		for j < len(text) && j-i < 4 && text[j]&0xC0 == 0x80 {
			j++
		}
		tokens = t.appendChunk(tokens, text[i:j])
		i = j
	}
	tokens = t.merge(tokens)
	if eos {
		tokens = append(tokens, EOS)
	}
	return tokens
}

// appendChunk appends chunk's piece, or its bytes as byte-fallback tokens.
func (t *Tokenizer) appendChunk(tokens []int, chunk string) []int {
	if id, ok := t.ids[chunk]; ok {
		return append(tokens, id)
	}
	for i := 0; i < len(chunk); i++ {
		tokens = append(tokens, byteBase+int(chunk[i]))
	}
	return tokens
}

// minMergeScore is run.c's initial best score: pairs scoring no more never merge.
const minMergeScore = -1e10

// merge applies BPE merges to tokens and returns the result, reusing its storage.
// The tokens form a linked list; a heap holds every adjacent pair that is a piece,
// ordered like run.c's scan (score, then position). A pair whose tokens changed since
// it was pushed is stale and skipped: each token carries a version for that.
func (t *Tokenizer) merge(tokens []int) []int {
	n := len(tokens)
	if n < 2 {
		return tokens
	}
	next := make([]int, n) // index of the following token, n at the end
	prev := make([]int, n) // index of the preceding token, -1 at the start
	version := make([]int, n)
	for i := range n {
		next[i], prev[i] = i+1, i-1
	}
	pairs := &pairHeap{}
	var buf []byte
	push := func(left int) {
		if left < 0 || next[left] >= n {
			return
		}
		right := next[left]
		buf = append(append(buf[:0], t.pieces[tokens[left]]...), t.pieces[tokens[right]]...)
		id, ok := t.ids[string(buf)]
		if !ok || !(t.scores[id] > minMergeScore) {
			return
		}
		heap.Push(pairs, pair{score: t.scores[id], left: left, right: right, id: id,
			leftVersion: version[left], rightVersion: version[right]})
	}
	for i := range n - 1 {
		push(i)
	}
	for pairs.Len() > 0 {
		p := heap.Pop(pairs).(pair)
		if version[p.left] != p.leftVersion || version[p.right] != p.rightVersion || next[p.left] != p.right {
			continue // stale: one of its tokens merged since
		}
		// Merge right into left.
		tokens[p.left] = p.id
		version[p.left]++
		version[p.right]++ // the right token is gone; any pair with it is stale
		next[p.left] = next[p.right]
		if next[p.right] < n {
			prev[next[p.right]] = p.left
		}
		push(prev[p.left])
		push(p.left)
	}
	out := tokens[:0]
	for i := 0; i < n; i = next[i] {
		out = append(out, tokens[i])
	}
	return out
}

// pair is a candidate merge of the adjacent tokens at left and right into id.
type pair struct {
	score                     float32
	left, right, id           int
	leftVersion, rightVersion int
}

// pairHeap orders pairs by highest score, then leftmost.
type pairHeap []pair

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score > h[j].score
	}
	return h[i].left < h[j].left
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pair)) }
func (h *pairHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
