package embedded

import (
	"errors"
	"slices"
	"testing"
)

func TestStream(t *testing.T) {
	tests := []struct {
		name    string
		stops   []string
		writes  []string
		want    []string // deltas
		stopped bool
	}{
		{"plain", nil, []string{"Once", " upon"}, []string{"Once", " upon"}, false},
		{"character split over byte tokens", nil, []string{"a\xe2", "\x82", "\xac!"}, []string{"a", "€!"}, false},
		{"four-byte character", nil, []string{"\xf0", "\x9f", "\x99", "\x82"}, []string{"🙂"}, false},
		{"invalid bytes", nil, []string{"\xff", "a\x80b"}, []string{"\uFFFD", "a\uFFFDb"}, false},
		{"character cut by an invalid byte", nil, []string{"\xe2\x82", "x"}, []string{"\uFFFD\uFFFDx"}, false},
		{"truncated at the end", nil, []string{"ok\xe2\x82"}, []string{"ok", "\uFFFD"}, false},
		{"stop in one write", []string{"END"}, []string{"abcENDdef"}, []string{"abc"}, true},
		{"stop across writes", []string{"END"}, []string{"abcE", "N", "Dxyz"}, []string{"abc"}, true},
		{"stop prefix released", []string{"END"}, []string{"abcE", "Nx", "y"}, []string{"abc", "ENx", "y"}, false},
		{"stop prefix flushed", []string{"END"}, []string{"abcEN"}, []string{"abc", "EN"}, false},
		{"earliest stop wins", []string{"cd", "b"}, []string{"abcd"}, []string{"a"}, true},
		{"overlapping prefixes", []string{"aab"}, []string{"a", "a", "a", "b"}, []string{"a"}, true},
		{"stop at the start", []string{"Once"}, []string{"Once upon"}, nil, true},
		{"multibyte stop", []string{"€uro"}, []string{"x\xe2\x82", "\xac", "u", "ro"}, []string{"x"}, true},
		{"multibyte stop prefix released", []string{"€uro"}, []string{"x\xe2\x82", "\xac", "!"}, []string{"x", "€!"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			s := &stream{stops: tt.stops, emit: func(d string) error { got = append(got, d); return nil }}
			stopped := false
			for _, w := range tt.writes {
				var err error
				if stopped, err = s.write(w); err != nil {
					t.Fatal(err)
				}
				if stopped {
					break
				}
			}
			if !stopped {
				if err := s.flush(); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, tt.want) || stopped != tt.stopped {
				t.Errorf("deltas %q (stopped %v), want %q (stopped %v)", got, stopped, tt.want, tt.stopped)
			}
		})
	}
}

func TestStreamEmitError(t *testing.T) {
	errGone := errors.New("gone")
	s := &stream{emit: func(string) error { return errGone }}
	if _, err := s.write("x"); !errors.Is(err, errGone) {
		t.Errorf("write: %v", err)
	}
	s = &stream{stops: []string{"xy"}, emit: func(string) error { return errGone }}
	if _, err := s.write("x"); err != nil {
		t.Fatalf("held text was emitted: %v", err)
	}
	if err := s.flush(); !errors.Is(err, errGone) {
		t.Errorf("flush: %v", err)
	}
}
