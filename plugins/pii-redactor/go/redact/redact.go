// Package redact is the logic of the pii-redactor module: it masks e-mail addresses,
// phone numbers and payment card numbers in the text of chat messages. The rules, in
// full in plugins/pii-redactor/README.md, are in short:
//
//   - E-mail: a run of [A-Za-z0-9._%+-], '@', one or more dot-terminated domain labels
//     ([A-Za-z0-9], with inner '-'), and a top-level domain of two or more ASCII letters.
//   - Number: an optional '+', then groups of ASCII digits joined by a single space or
//     '-'; one group may be in parentheses (1–5 digits; the separators around it are
//     optional) and at most one group may be a single digit. A number touching an ASCII
//     letter, digit or '_', or starting with a digit right after '.', '-', '+' or '/',
//     is left alone.
//   - Card: a number without '+' or parentheses, with one kind of separator, 13–19
//     digits and a valid Luhn checksum. Checked first.
//   - Phone: a number with '+' and 7–15 digits; or without '+', with 10–15 digits and
//     either parentheses or at least two groups with one kind of separator, unless every
//     group after the first has three digits (grouped thousands, "1 000 000 000").
//   - A number that is neither but may be several run together (more than 19 digits, or
//     mixed separators) is cut to its longest leading run of groups that is one.
//
// E-mail addresses are found first; numbers are looked for only between them, and
// replacements are never scanned again.
package redact

import (
	"errors"
	"regexp"
	"slices"
	"strings"

	"github.com/cocoonhost/cocoon/abi/guest"
)

// Config is a parsed module config.
type Config struct {
	// Email, Phone and Card replace what they name; empty means the default token.
	Email string `json:"email"`
	Phone string `json:"phone"`
	Card  string `json:"card"`
	// Roles lists the roles of the messages to scan; nil scans every message.
	Roles []string `json:"roles"`
}

// Default replacement tokens.
const (
	DefaultEmail = "[email]"
	DefaultPhone = "[phone]"
	DefaultCard  = "[card]"
)

// ParseConfig parses the module's optional JSON config,
//
//	{"email": "[email]", "phone": "[phone]", "card": "[card]", "roles": ["user", "system"]}
//
// strictly (unknown members are an error). No config, or a member left out or empty,
// means the default. An empty roles list is an error: it would scan nothing.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := guest.DecodeConfig(b, &c); err != nil && !errors.Is(err, guest.ErrNoConfig) {
		return Config{}, err
	}
	if c.Roles != nil && len(c.Roles) == 0 {
		return Config{}, errors.New("config: roles is empty, so nothing would be scanned; leave it out to scan every message")
	}
	c.Email = cmp(c.Email, DefaultEmail)
	c.Phone = cmp(c.Phone, DefaultPhone)
	c.Card = cmp(c.Card, DefaultCard)
	return c, nil
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Request masks the text of every message whose role c scans.
func (c Config) Request(req *guest.ChatRequest) {
	for i := range req.Messages {
		if c.Roles == nil || slices.Contains(c.Roles, req.Messages[i].Role) {
			req.Messages[i].Content.MapText(c.Text)
		}
	}
}

var email = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}`)

// Text returns s with e-mail addresses, cards and phones replaced by c's tokens.
func (c Config) Text(s string) string {
	var out strings.Builder
	done := 0 // s[:done] is in out
	gap := 0  // start of the text after the last e-mail
	scan := func(end int) {
		for i := gap; i < end; {
			n, kind := number(s, i, end)
			if n == 0 {
				i++
				continue
			}
			if kind != nil {
				out.WriteString(s[done:i])
				out.WriteString(kind(c))
				done = i + n
			}
			i += n
		}
	}
	for _, m := range email.FindAllStringIndex(s, -1) {
		scan(m[0])
		out.WriteString(s[done:m[0]])
		out.WriteString(c.Email)
		done, gap = m[1], m[1]
	}
	scan(len(s))
	if done == 0 {
		return s
	}
	out.WriteString(s[done:])
	return out.String()
}

// A kind picks the replacement of a number from a Config.
type kind func(Config) string

func card(c Config) string  { return c.Card }
func phone(c Config) string { return c.Phone }

// A grp is one group of digits of a number.
type grp struct {
	digits string
	end    int  // offset in s just after the group
	sep    byte // the separator before it: ' ', '-', or 0 for none
	paren  bool
}

// number reads the number starting at s[i], no further than s[end], and returns how
// many bytes to consume (0 if no number starts there) and, if they are a card or a
// phone, its kind. A number is judged whole. If it is neither a card nor a phone but
// may be several numbers run together (it has more than 19 digits, or mixes
// separators, as in "415-555-2671 12"), its longest leading run of groups that is a
// card or a phone is taken. Otherwise the whole number is consumed unchanged.
func number(s string, i, end int) (int, kind) {
	if b := s[i]; b != '+' && b != '(' && !isDigit(b) {
		return 0, nil
	}
	plus := s[i] == '+'
	groups := readGroups(s, i, end, plus)
	if len(groups) == 0 {
		return 0, nil
	}
	n := groups[len(groups)-1].end - i
	if !startsNumber(s, i) {
		return n, nil
	}
	for p := len(groups); p > 0; p-- {
		if p < len(groups) && !runTogether(groups) {
			break
		}
		last := groups[p-1].end
		if last < len(s) && isWordByte(s[last]) {
			continue
		}
		if k := classify(plus, groups[:p]); k != nil {
			return last - i, k
		}
	}
	return n, nil
}

// runTogether reports whether groups may be several numbers: they have more than 19
// digits or more than one kind of separator.
func runTogether(groups []grp) bool {
	d := 0
	for _, g := range groups {
		d += len(g.digits)
	}
	return d > 19 || !sameSeparator(groups)
}

// sameSeparator reports whether all the separators between groups are the same.
func sameSeparator(groups []grp) bool {
	for _, g := range groups[min(2, len(groups)):] {
		if g.sep != groups[1].sep {
			return false
		}
	}
	return true
}

// readGroups reads the groups of the number at s[i].
func readGroups(s string, i, end int, plus bool) []grp {
	var groups []grp
	j := i
	if plus {
		j++
	}
	var paren, single bool // a group in parentheses, of one digit, was read
	for {
		k := j
		var sep byte
		if len(groups) > 0 && k < end && (s[k] == ' ' || s[k] == '-') {
			sep = s[k]
			k++
		}
		g := readGroup(s, k, end)
		if g.digits == "" ||
			len(groups) > 0 && sep == 0 && !g.paren && !groups[len(groups)-1].paren ||
			g.paren && paren ||
			len(g.digits) == 1 && single {
			return groups
		}
		g.sep = sep
		groups = append(groups, g)
		paren = paren || g.paren
		single = single || len(g.digits) == 1
		j = g.end
	}
}

// readGroup reads a group of digits at s[k], bare or in parentheses.
func readGroup(s string, k, end int) grp {
	if k < end && s[k] == '(' {
		j := k + 1
		for j < end && isDigit(s[j]) {
			j++
		}
		if n := j - k - 1; n < 1 || n > 5 || j >= end || s[j] != ')' {
			return grp{}
		}
		return grp{digits: s[k+1 : j], end: j + 1, paren: true}
	}
	j := k
	for j < end && isDigit(s[j]) {
		j++
	}
	return grp{digits: s[k:j], end: j}
}

// classify returns the kind of a number made of groups, nil if it is neither a card
// nor a phone.
func classify(plus bool, groups []grp) kind {
	var digits []byte
	paren := false
	for _, g := range groups {
		digits = append(digits, g.digits...)
		paren = paren || g.paren
	}
	d := len(digits)
	plain := !plus && !paren && sameSeparator(groups)
	switch {
	case plain && 13 <= d && d <= 19 && luhn(digits):
		return card
	case plus && 7 <= d && d <= 15:
		return phone
	case !plus && 10 <= d && d <= 15 && (paren || plain && len(groups) >= 2 && !thousands(groups)):
		return phone
	}
	return nil
}

// startsNumber reports whether a number may start at s[i].
func startsNumber(s string, i int) bool {
	b := s[i]
	if b != '+' && b != '(' && !isDigit(b) {
		return false
	}
	if i == 0 {
		return true
	}
	prev := s[i-1]
	return !isWordByte(prev) && !(isDigit(b) && strings.IndexByte(".-+/", prev) >= 0)
}

// thousands reports whether every group after the first has three digits, as in
// "1 000 000 000".
func thousands(groups []grp) bool {
	for _, g := range groups[1:] {
		if len(g.digits) != 3 {
			return false
		}
	}
	return true
}

func luhn(digits []byte) bool {
	sum := 0
	for i := range digits {
		d := int(digits[len(digits)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func isWordByte(b byte) bool {
	return b == '_' || isDigit(b) || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}
