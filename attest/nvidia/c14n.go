package nvidia

import (
	"bufio"
	"crypto/sha512"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/beevik/etree"
)

// Canonical XML 1.1 (W3C, http://www.w3.org/2006/12/xml-c14n11), without comments, as
// XML-DSig applies it to NVIDIA's RIMs: once to the whole document minus its Signature
// element (the enveloped-signature transform, then c14n11), once to the SignedInfo
// element alone (a document subset whose apex is SignedInfo). What this implementation
// covers, and what parseRIMDocument refuses before it runs:
//
//   - Elements render as <qname ns-decls attrs>children</qname>, empty ones too.
//   - Namespace nodes (inclusive canonicalization): an element renders each in-scope
//     namespace whose value differs from what its nearest rendered ancestor has in scope
//     (for an apex: from nothing), sorted by prefix, the default namespace first;
//     xmlns="" only where the parent had a default namespace.
//   - Attributes sorted by namespace URI, then local name (unqualified ones first).
//   - Text escapes & < > and CR; attribute values escape & < " TAB LF CR.
//   - Comments are dropped; whitespace outside the document element is dropped.
//   - Refused by the parser: processing instructions and DTDs (a DTD could declare
//     default attributes and entities that canonical XML expands), and xml:* attributes
//     on the ancestors of the signature (which a subset's apex would inherit or fix up:
//     xml:lang, xml:space, xml:base). xml:* attributes inside a rendered subtree render
//     as ordinary attributes, which c14n11 does too.
//
// Text and attribute values are those encoding/xml decoded: entities and character
// references resolved, CR LF folded to LF (XML's end-of-line handling). encoding/xml does
// not normalize attribute values (XML turns a literal tab or line break in one into a
// space; a character reference stays): a RIM with such a literal canonicalizes otherwise
// than its signer did and fails to verify. The deviation can only refuse a good RIM,
// never accept a changed one, and NVIDIA's RIMs have none.

// xmlNamespace is the namespace the reserved prefix xml is bound to.
const xmlNamespace = "http://www.w3.org/XML/1998/namespace"

// canonicalize returns the canonical form of e's subtree, with e as the apex of the
// rendered node set (its ancestors' namespaces in scope, nothing of them rendered), and
// the element skip (the signature) left out entirely. skip may be nil.
func canonicalize(e, skip *etree.Element) []byte {
	var b strings.Builder
	c14nElement(&b, e, skip, inScope(e.Parent()), map[string]string{}, true)
	return []byte(b.String())
}

// canonicalSHA384 is the SHA-384 of canonicalize(e, skip), computed as the canonical
// form is written: a RIM's ~20 KiB form is never held, copied nor grown in memory.
func canonicalSHA384(e, skip *etree.Element) [sha512.Size384]byte {
	h := sha512.New384()
	w := bufio.NewWriterSize(h, 4096)
	c14nElement(w, e, skip, inScope(e.Parent()), map[string]string{}, true)
	w.Flush() // a hash's Write never fails
	return [sha512.Size384]byte(h.Sum(nil))
}

// c14nWriter is where canonical XML is written: a strings.Builder, or a buffered hash.
type c14nWriter interface {
	io.Writer
	io.StringWriter
}

// inScope returns the namespaces in scope at e (prefix to URI, "" for the default
// namespace), e and its ancestors' declarations, the nearer winning. nil e has none.
func inScope(e *etree.Element) map[string]string {
	var chain []*etree.Element
	for ; e != nil; e = e.Parent() {
		chain = append(chain, e)
	}
	ns := map[string]string{}
	for _, el := range slices.Backward(chain) {
		declare(ns, el)
	}
	return ns
}

// declare applies e's namespace declarations to ns.
func declare(ns map[string]string, e *etree.Element) {
	for _, a := range e.Attr {
		if prefix, ok := nsDeclaration(a); ok {
			ns[prefix] = a.Value
		}
	}
}

// nsDeclaration reports whether a declares a namespace, and for which prefix.
func nsDeclaration(a etree.Attr) (prefix string, ok bool) {
	switch {
	case a.Space == "" && a.Key == "xmlns":
		return "", true
	case a.Space == "xmlns":
		return a.Key, true
	}
	return "", false
}

// c14nElement renders e. parentScope is what the parent had in scope, rendered what
// the nearest rendered ancestor rendered or had in scope (empty for the apex); apex
// says e is the apex (rendered is then not parentScope).
func c14nElement(b c14nWriter, e, skip *etree.Element, parentScope, rendered map[string]string, apex bool) {
	// An element below the apex that declares no namespace has its parent's scope, all
	// of it rendered already: it shares the parent's map and renders no namespace node,
	// which spares a map copy and a sort per element (most of a RIM's elements).
	scope := parentScope
	declares := slices.ContainsFunc(e.Attr, func(a etree.Attr) bool { _, ok := nsDeclaration(a); return ok })
	if declares {
		scope = maps.Clone(parentScope)
		declare(scope, e)
	}
	name := e.FullTag()
	b.WriteString("<")
	b.WriteString(name)

	var prefixes []string
	if apex || declares {
		prefixes = slices.Sorted(maps.Keys(scope))
	}
	for _, p := range prefixes {
		uri := scope[p]
		prev, had := rendered[p]
		if p == "" && uri == "" && (!had || prev == "") {
			continue // no default namespace, and none to undeclare
		}
		if had && prev == uri {
			continue
		}
		if p == "" {
			b.WriteString(` xmlns="`)
		} else {
			b.WriteString(" xmlns:" + p + `="`)
		}
		escapeAttr(b, uri)
		b.WriteString(`"`)
	}

	type attr struct{ uri, local, qname, value string }
	var attrs []attr
	for _, a := range e.Attr {
		if _, isNS := nsDeclaration(a); isNS {
			continue
		}
		uri := ""
		if a.Space != "" {
			uri = resolvePrefix(scope, a.Space)
		}
		attrs = append(attrs, attr{uri, a.Key, a.FullKey(), a.Value})
	}
	slices.SortFunc(attrs, func(x, y attr) int {
		if c := strings.Compare(x.uri, y.uri); c != 0 {
			return c
		}
		return strings.Compare(x.local, y.local)
	})
	for _, a := range attrs {
		b.WriteString(" " + a.qname + `="`)
		escapeAttr(b, a.value)
		b.WriteString(`"`)
	}
	b.WriteString(">")

	// Every namespace in scope here is now rendered or was already.
	for _, tok := range e.Child {
		switch t := tok.(type) {
		case *etree.Element:
			if t != skip {
				c14nElement(b, t, skip, scope, scope, false)
			}
		case *etree.CharData:
			escapeText(b, t.Data)
		}
	}
	b.WriteString("</" + name + ">")
}

// resolvePrefix is the URI prefix is bound to in scope ("" when unbound, which the
// parser refuses beforehand).
func resolvePrefix(scope map[string]string, prefix string) string {
	if prefix == "xml" {
		return xmlNamespace
	}
	return scope[prefix]
}

// textEscaper and attrEscaper escape text and attribute values as canonical XML does.
var (
	textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", "&#xD;")
	attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", `"`, "&quot;", "\t", "&#x9;", "\n", "&#xA;", "\r", "&#xD;")
)

func escapeText(b c14nWriter, s string) { textEscaper.WriteString(b, s) }

func escapeAttr(b c14nWriter, s string) { attrEscaper.WriteString(b, s) }
