package llama2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The byte-fallback token of byte b.
func byteTok(b byte) int { return byteBase + int(b) }

func TestEncode(t *testing.T) {
	_, tok := loadModel(t)
	tests := []struct {
		text     string
		bos, eos bool
		want     []int
	}{
		{"Once upon a time", true, false, []int{1, 403, 407, 261, 378}}, // the README's fact
		{"Once upon a time", false, true, []int{403, 407, 261, 378, 2}},
		{"", true, false, []int{1}},
		{"", false, false, []int{}},
		{"", true, true, []int{1, 2}},
		{"é", true, false, []int{1, 410, 485}}, // a two-byte character with a piece
		// Equal scores: the leftmost pair merges first ("oo" "o", not "o" "oo").
		{"zooo", true, false, []int{1, 410, 451, 347, 414}},
		// No piece for these characters: the dummy prefix " " stays alone and each
		// UTF-8 byte becomes its byte-fallback token.
		{"日", true, false, []int{1, 410, byteTok(0xE6), byteTok(0x97), byteTok(0xA5)}},
		{"🙂", false, false, []int{410, byteTok(0xF0), byteTok(0x9F), byteTok(0x99), byteTok(0x82)}},
		{"\n", false, false, []int{410, byteTok('\n')}},
		// Invalid UTF-8 is encoded byte by byte too.
		{"\xff", false, false, []int{410, byteTok(0xFF)}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.text), func(t *testing.T) {
			if got := tok.Encode(tt.text, tt.bos, tt.eos); !slices.Equal(got, tt.want) {
				t.Errorf("Encode(%q, %v, %v) = %v, want %v", tt.text, tt.bos, tt.eos, got, tt.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	_, tok := loadModel(t)
	tests := []struct {
		prev, token int
		want        string
	}{
		{BOS, 403, "Once"}, // the dummy prefix's space is dropped after BOS
		{378, 403, " Once"},
		{BOS, 410, ""},
		{BOS, byteTok(' '), " "}, // a byte token is never stripped
		{5, byteTok('A'), "A"},
		{5, byteTok(0xC3), "\xc3"}, // half a character: raw bytes
		{5, byteTok(0x00), "\x00"},
		{5, EOS, "\n</s>\n"},
	}
	for _, tt := range tests {
		if got := tok.Decode(tt.prev, tt.token); got != tt.want {
			t.Errorf("Decode(%d, %d) = %q, want %q", tt.prev, tt.token, got, tt.want)
		}
	}
}

// decodeAll is the text of tokens, which start with BOS.
func decodeAll(tok *Tokenizer, tokens []int) string {
	var b strings.Builder
	for i := 1; i < len(tokens); i++ {
		b.WriteString(tok.Decode(tokens[i-1], tokens[i]))
	}
	return b.String()
}

func TestRoundTrip(t *testing.T) {
	_, tok := loadModel(t)
	for _, text := range []string{
		"Once upon a time, there was a little girl named Lily.",
		"  two leading spaces and trailing ones  ",
		"Lines\nand\ttabs\r\n",
		"Unicode: naïve café, Ελληνικά, 日本語, emoji 🙂👍🏽",
		"invalid \xff\xfe bytes and a cut character \xe2\x82",
		"<0x41> is text, not a byte token; <s> too",
		strings.Repeat("abc ", 300),
	} {
		tokens := tok.Encode(text, true, false)
		if got := decodeAll(tok, tokens); got != text {
			t.Errorf("Decode(Encode(%q)) = %q", text, got)
		}
	}
}

// encodeRunC is run.c's encode, transliterated: after the initial tokens it rescans all
// pairs for the best merge, one merge at a time. Encode must agree with it.
func encodeRunC(tok *Tokenizer, text string) []int {
	tokens := []int{BOS}
	if text != "" {
		tokens = append(tokens, tok.ids[" "])
	}
	var buf []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c&0xC0 != 0x80 {
			buf = buf[:0]
		}
		buf = append(buf, c)
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(buf) < 4 {
			continue
		}
		if id, ok := tok.ids[string(buf)]; ok {
			tokens = append(tokens, id)
		} else {
			for _, b := range buf {
				tokens = append(tokens, byteTok(b))
			}
		}
		buf = buf[:0]
	}
	for {
		best, bestID, bestIdx := float32(-1e10), -1, -1
		for i := 0; i < len(tokens)-1; i++ {
			id, ok := tok.ids[tok.pieces[tokens[i]]+tok.pieces[tokens[i+1]]]
			if ok && tok.scores[id] > best {
				best, bestID, bestIdx = tok.scores[id], id, i
			}
		}
		if bestIdx < 0 {
			return tokens
		}
		tokens[bestIdx] = bestID
		tokens = slices.Delete(tokens, bestIdx+1, bestIdx+2)
	}
}

func TestEncodeMatchesRunC(t *testing.T) {
	_, tok := loadModel(t)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "e", "t", "h", "n", "o", "o", "l", "p", " ", " ", "The", "the", ",", ".", "\n", "é", "日", "\xe2", "\x80", "\xff", "Lily", "ing", "ou"}
	for i := range 2000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		text := b.String()
		if got, want := tok.Encode(text, true, false), encodeRunC(tok, text); !slices.Equal(got, want) {
			t.Fatalf("case %d: Encode(%q) = %v, run.c gives %v", i, text, got, want)
		}
	}
}

// tokenizerFile builds a tokenizer file: pieces with scores, byte-fallback pieces at
// 3..258 as SentencePiece lays them out.
func tokenizerFile(maxLen int32, extra ...string) []byte {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, maxLen)
	piece := func(s string, score float32) {
		binary.Write(&buf, binary.LittleEndian, score)
		binary.Write(&buf, binary.LittleEndian, int32(len(s)))
		buf.WriteString(s)
	}
	for _, s := range []string{"<unk>", "\n<s>\n", "\n</s>\n"} {
		piece(s, 0)
	}
	for b := range 256 {
		piece(fmt.Sprintf("<0x%02X>", b), 0)
	}
	for i, s := range extra {
		piece(s, -float32(i))
	}
	return buf.Bytes()
}

func TestReadTokenizerErrors(t *testing.T) {
	good := tokenizerFile(8, " ", "a", " a")
	vocab := byteBase + 256 + 3
	if tok, err := ReadTokenizer(bytes.NewReader(good), int64(len(good)), vocab); err != nil {
		t.Fatalf("valid file: %v", err)
	} else if got := tok.Encode("a", false, false); !slices.Equal(got, []int{vocab - 1}) {
		t.Fatalf(`Encode("a") = %v, want the merged " a" %d`, got, vocab-1)
	}
	badByte := tokenizerFile(8)
	copy(badByte[bytes.Index(badByte, []byte("<0x41>")):], "<0x42>")
	longPiece := tokenizerFile(6, "toolong")
	hugeLen := slices.Clone(good)
	binary.LittleEndian.PutUint32(hugeLen, 1<<30)
	tests := []struct {
		name  string
		data  []byte
		size  int64 // 0: len(data)
		vocab int
		want  string
	}{
		{"truncated", good[:len(good)-1], 0, vocab, "truncated at piece 261 of 262"},
		{"truncated in a header", good[:len(good)-6], 0, vocab, "truncated at piece 261 of 262"},
		{"shorter than claimed", good, int64(len(good)) + 10, vocab, "file is truncated"},
		{"trailing bytes", append(slices.Clone(good), 0, 0), 0, vocab, "2 bytes after its 262 pieces"},
		{"fewer pieces than the model's vocabulary", good, 0, vocab + 1, "truncated at piece 262 of 263"},
		{"bad max length", hugeLen, 0, vocab, "maximum piece length 1073741824"},
		{"piece longer than the maximum", longPiece, 0, byteBase + 257, "piece 259 has length 7"},
		{"no byte fallback", badByte, 0, byteBase + 256, `piece 68 is "<0x42>"`},
		{"empty", nil, 0, vocab, "tokenizer is 0 bytes"},
		{"vocabulary too small", good, 0, 100, "too small for byte fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.size
			if size == 0 {
				size = int64(len(tt.data))
			}
			_, err := ReadTokenizer(bytes.NewReader(tt.data), size, tt.vocab)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMinMergeScore(t *testing.T) {
	// run.c never merges a pair whose piece scores -1e10 or less (or NaN).
	data := tokenizerFile(8, " ", "a", " a")
	binary.LittleEndian.PutUint32(data[len(data)-6-4:], math.Float32bits(-1e10))
	tok, err := ReadTokenizer(bytes.NewReader(data), int64(len(data)), byteBase+259)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Encode("a", false, false), []int{byteBase + 256, byteBase + 257}; !slices.Equal(got, want) {
		t.Errorf(`Encode("a") = %v, want %v unmerged`, got, want)
	}
}

func BenchmarkEncode(b *testing.B) {
	_, tok := loadModel(b)
	text := strings.Repeat("Once upon a time, there was a little girl named Lily. ", 40)
	for b.Loop() {
		tok.Encode(text, true, false)
	}
	b.SetBytes(int64(len(text)))
}
