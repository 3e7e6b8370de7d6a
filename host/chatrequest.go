package host

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/cocoonhost/cocoon/host/internal/jsonscan"
)

// The chat request a host serves. CheckChatRequest checks a request against it twice
// per request: the client's body before the pre modules (a 400 naming the member), and
// what the last pre module returns (that module's invalid_output). The table below is
// the one list of what the host implements; web/doc.go and README.md describe it.

// MaxTokensLimit is the largest max_tokens or max_completion_tokens a request may ask
// for. A backend caps the completion at its context window anyway; the bound keeps the
// value an int on every platform.
const MaxTokensLimit = math.MaxInt32

// A memberCheck checks one member's value. It returns "" when the value is fine, or
// where in the value the problem is (such as "[1].content", empty for the value
// itself) and what it is.
type memberCheck func(v []byte) (at, problem string)

// chatMembers checks the members of a chat request the host reads or refuses, by name.
// A member not listed passes to the backend untouched: SDKs send new fields, and an
// OpenAI-compatible server may honour what the host does not read. A member that
// appears twice is checked each time, so whichever occurrence a backend takes is fine.
var chatMembers = map[string]memberCheck{
	// Read by the host.
	"messages":              checkMessages,
	"model":                 nullOr(isString, "must be a string"),
	"max_tokens":            nullOr(isTokenCount, "must be an integer from 1 to "+strconv.Itoa(MaxTokensLimit)),
	"max_completion_tokens": nullOr(isTokenCount, "must be an integer from 1 to "+strconv.Itoa(MaxTokensLimit)),
	"temperature":           nullOr(numberIn(0, 2), "must be a number from 0 to 2"),
	"top_p":                 nullOr(numberIn(0, 1), "must be a number from 0 to 1"),
	"seed":                  nullOr(isInt64, "must be an integer"),
	"stop":                  nullOr(isStop, "must be a string or an array of strings"),
	"stream":                nullOr(isBool, "must be true or false"),
	"stream_options":        checkStreamOptions,
	"n":                     nullOr(isOne, "must be 1: this host answers with one choice"),
	"user":                  nullOr(isString, "must be a string"),
	// Passed to the backend (OpenAI-compatible servers honour them; the embedded engine
	// does not), checked so that a module cannot hand the backend a malformed one.
	"presence_penalty":  nullOr(numberIn(-2, 2), "must be a number from -2 to 2"),
	"frequency_penalty": nullOr(numberIn(-2, 2), "must be a number from -2 to 2"),
	// Not implemented: refused rather than ignored, so that a client that asks for a
	// tool call or JSON output is told instead of getting plain text. The neutral value
	// of each (tools: [], logprobs: false, ...) passes.
	"tools":              unsupportedUnless(isEmptyArray, "no tool calls"),
	"functions":          unsupportedUnless(isEmptyArray, "no tool calls"),
	"tool_choice":        unsupportedUnless(isNone, "no tool calls"),
	"function_call":      unsupportedUnless(isNone, "no tool calls"),
	"response_format":    unsupportedUnless(isTextFormat, `only {"type": "text"}`),
	"logprobs":           unsupportedUnless(isFalse, "no log probabilities"),
	"top_logprobs":       unsupportedUnless(isZero, "no log probabilities"),
	"logit_bias":         unsupportedUnless(isEmptyObject, "token ids depend on the backend's tokenizer"),
	"audio":              unsupportedUnless(never, "text only"),
	"modalities":         unsupportedUnless(isTextModality, "text only"),
	"prediction":         unsupportedUnless(never, "no predicted outputs"),
	"web_search_options": unsupportedUnless(never, "no web search"),
}

// CheckChatRequest checks that b is a chat completion request this host can serve: a
// JSON object with a non-empty "messages" array of messages with a string "role"
// (tool and function roles excepted) and a "content" that is a string, null or an
// array of text parts; the members the host reads of the right type and in range
// (max_tokens, temperature, n = 1, ...); and none of the parameters it does not
// implement (tools, response_format other than text, logprobs, ...). Other members are
// not looked at.
//
// The error is a *Error with CodeInvalidRequest (status 400) whose message names the
// member at fault, such as "messages[1].content[0].type: \"image_url\" is not supported
// by this host (text parts only)". It reads b once without decoding it: about 2 µs for a
// short request (BenchmarkCheckChatRequest), linear in its size.
func CheckChatRequest(b []byte) error {
	if err := chatRequestProblem(b); err != nil {
		return &Error{Code: CodeInvalidRequest, Status: statusOf(CodeInvalidRequest), Message: err.Error()}
	}
	return nil
}

// chatRequestProblem is CheckChatRequest's check, with a plain error.
func chatRequestProblem(b []byte) error {
	hasMessages := false
	err := jsonscan.Members(b, func(key string, v []byte) error {
		check, ok := chatMembers[key]
		if !ok {
			return nil
		}
		hasMessages = hasMessages || key == "messages"
		if at, problem := check(v); problem != "" {
			return fmt.Errorf("%s%s: %s", key, at, problem)
		}
		return nil
	})
	if err == nil && !hasMessages {
		err = errors.New("messages: missing: a chat request needs a non-empty array of messages")
	}
	return err
}

// checkMessages checks "messages": a non-empty array of messages.
func checkMessages(v []byte) (at, problem string) {
	if jsonscan.KindOf(v) != jsonscan.Array {
		return "", "must be a non-empty array of messages"
	}
	at, problem, n := checkElements(v, "", checkMessage)
	if problem == "" && n == 0 {
		problem = "must be a non-empty array of messages"
	}
	return at, problem
}

// checkElements checks each element of the array v with check, up to the first
// problem, which it places at where[i]; it returns how many elements passed.
func checkElements(v []byte, where string, check memberCheck) (at, problem string, n int) {
	jsonscan.Elements(v, func(e []byte) error {
		if at, problem = check(e); problem != "" {
			at = fmt.Sprintf("%s[%d]%s", where, n, at)
			return errStop
		}
		n++
		return nil
	})
	return at, problem, n
}

// errStop ends a jsonscan walk at the first problem.
var errStop = errors.New("stop")

// checkMessage checks one message: an object with a string role and a content.
func checkMessage(m []byte) (at, problem string) {
	if jsonscan.KindOf(m) != jsonscan.Object {
		return "", "must be an object with a role and a content"
	}
	hasRole := false
	jsonscan.Fields(m, func(key string, v []byte) error {
		switch key {
		case "role":
			hasRole = true
			role, ok := jsonscan.Unquote(v)
			switch {
			case !ok:
				at, problem = ".role", "must be a string"
			case role == "tool" || role == "function":
				at, problem = ".role", fmt.Sprintf("%q is not supported by this host (no tool calls)", role)
			}
		case "content":
			at, problem = checkContent(v)
		case "name":
			if !isNull(v) && !isString(v) {
				at, problem = ".name", "must be a string"
			}
		case "tool_calls", "function_call":
			if !isNull(v) && !isEmptyArray(v) {
				at, problem = "."+key, "not supported by this host (no tool calls)"
			}
		case "audio":
			if !isNull(v) {
				at, problem = ".audio", "not supported by this host (text only)"
			}
		}
		if problem != "" {
			return errStop
		}
		return nil
	})
	if problem == "" && !hasRole {
		at, problem = ".role", "missing: every message needs a string role"
	}
	return at, problem
}

// checkContent checks a message's content: a string, null, or an array of text parts.
func checkContent(v []byte) (at, problem string) {
	switch jsonscan.KindOf(v) {
	case jsonscan.String, jsonscan.Null:
		return "", ""
	case jsonscan.Array:
	default:
		return ".content", "must be a string, null or an array of text parts"
	}
	at, problem, _ = checkElements(v, ".content", checkPart)
	return at, problem
}

// checkPart checks one content part: {"type": "text", "text": "..."}.
func checkPart(part []byte) (at, problem string) {
	if jsonscan.KindOf(part) != jsonscan.Object {
		return "", `must be an object {"type": "text", "text": ...}`
	}
	var typ, text []byte
	jsonscan.Fields(part, func(key string, v []byte) error {
		switch key {
		case "type":
			typ = v
		case "text":
			text = v
		}
		return nil
	})
	t, ok := jsonscan.Unquote(typ)
	switch {
	case !ok:
		return ".type", `must be a string ("text")`
	case t != "text":
		return ".type", fmt.Sprintf("%q is not supported by this host (text parts only)", t)
	case !isString(text):
		return ".text", "must be a string"
	}
	return "", ""
}

func checkStreamOptions(v []byte) (at, problem string) {
	switch jsonscan.KindOf(v) {
	case jsonscan.Null:
		return "", ""
	case jsonscan.Object:
	default:
		return "", "must be an object"
	}
	jsonscan.Fields(v, func(key string, v []byte) error {
		if key == "include_usage" && !isNull(v) && !isBool(v) {
			at, problem = ".include_usage", "must be true or false"
			return errStop
		}
		return nil
	})
	return at, problem
}

// nullOr is the check of a member that may be null or a value for which ok holds;
// anything else is problem.
func nullOr(ok func([]byte) bool, problem string) memberCheck {
	return func(v []byte) (string, string) {
		if isNull(v) || ok(v) {
			return "", ""
		}
		return "", problem
	}
}

// unsupportedUnless is the check of a parameter the host does not implement: null and
// the parameter's neutral values (neutral) pass; anything else is refused, with why.
func unsupportedUnless(neutral func([]byte) bool, why string) memberCheck {
	return nullOr(neutral, "not supported by this host ("+why+")")
}

func isNull(v []byte) bool   { return jsonscan.KindOf(v) == jsonscan.Null }
func isString(v []byte) bool { return jsonscan.KindOf(v) == jsonscan.String }
func isBool(v []byte) bool   { return jsonscan.KindOf(v) == jsonscan.Bool }
func isFalse(v []byte) bool  { return string(v) == "false" }
func never([]byte) bool      { return false }

// isInteger reports whether v is a JSON number written as an integer (no fraction or
// exponent: encoding/json and the backends refuse 1.0 where an integer goes) that
// fits an int64.
func isInteger(v []byte) (int64, bool) {
	if jsonscan.KindOf(v) != jsonscan.Number {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

func isInt64(v []byte) bool { _, ok := isInteger(v); return ok }

// isTokenCount is a completion bound: at least 1, as OpenAI's API answers 0 with 400
// (integer_below_min_value); an unset bound is a missing member or null, never 0.
func isTokenCount(v []byte) bool {
	n, ok := isInteger(v)
	return ok && n >= 1 && n <= MaxTokensLimit
}

func isOne(v []byte) bool  { n, ok := isInteger(v); return ok && n == 1 }
func isZero(v []byte) bool { n, ok := isInteger(v); return ok && n == 0 }

// numberIn returns a check for a finite JSON number from lo to hi.
func numberIn(lo, hi float64) func([]byte) bool {
	return func(v []byte) bool {
		if jsonscan.KindOf(v) != jsonscan.Number {
			return false
		}
		f, err := strconv.ParseFloat(string(v), 64)
		return err == nil && f >= lo && f <= hi
	}
}

// isStop reports whether v is a string or an array of strings.
func isStop(v []byte) bool {
	if isString(v) {
		return true
	}
	if jsonscan.KindOf(v) != jsonscan.Array {
		return false
	}
	return jsonscan.Elements(v, func(e []byte) error {
		if !isString(e) {
			return errStop
		}
		return nil
	}) == nil
}

func isEmptyArray(v []byte) bool {
	return jsonscan.KindOf(v) == jsonscan.Array && jsonscan.Elements(v, func([]byte) error { return errStop }) == nil
}

func isEmptyObject(v []byte) bool {
	return jsonscan.KindOf(v) == jsonscan.Object && jsonscan.Fields(v, func(string, []byte) error { return errStop }) == nil
}

// isNone reports whether v is "none": tool_choice and function_call asking for no call.
func isNone(v []byte) bool { s, ok := jsonscan.Unquote(v); return ok && s == "none" }

// isTextFormat reports whether v is {"type": "text"}: plain text output.
func isTextFormat(v []byte) bool {
	if jsonscan.KindOf(v) != jsonscan.Object {
		return false
	}
	text := false
	err := jsonscan.Fields(v, func(key string, v []byte) error {
		if key != "type" {
			return errStop
		}
		s, ok := jsonscan.Unquote(v)
		text = ok && s == "text"
		return nil
	})
	return err == nil && text
}

// isTextModality reports whether v is ["text"].
func isTextModality(v []byte) bool {
	if jsonscan.KindOf(v) != jsonscan.Array {
		return false
	}
	n := 0
	err := jsonscan.Elements(v, func(e []byte) error {
		if s, ok := jsonscan.Unquote(e); !ok || s != "text" {
			return errStop
		}
		n++
		return nil
	})
	return err == nil && n == 1
}
