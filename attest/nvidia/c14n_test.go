package nvidia

import (
	"crypto/sha512"
	"errors"
	"testing"

	"github.com/beevik/etree"
)

// TestNVIDIACanonicalXML pins canonicalize to Canonical XML's own examples (W3C
// xml-c14n 1.0 section 3.3 "Start and End Tags" and 3.4 "Character Modifications and
// Character References", without their DTDs, which ParseRIM refuses, so without the
// attribute defaults and types those DTDs declare) and to the document subsets XML-DSig
// canonicalizes: an apex that renders the namespaces of its ancestors, and the whole
// document without the signature.
func TestNVIDIACanonicalXML(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		apex, skip     string // paths of the apex (default: root) and of the element left out
	}{
		{name: "start and end tags",
			in: `<doc>
   <e1   />
   <e2   ></e2>
   <e3   name = "elem3"   id="elem3"   />
   <e4   name="elem4"   id="elem4"   ></e4>
   <e5 a:attr="out" b:attr="sorted" attr2="all" attr="I'm"
      xmlns:b="http://www.ietf.org"
      xmlns:a="http://www.w3.org"
      xmlns="http://example.org"/>
   <e6 xmlns="" xmlns:a="http://www.w3.org">
      <e7 xmlns="http://www.ietf.org">
         <e8 xmlns="" xmlns:a="http://www.w3.org">
            <e9 xmlns="" xmlns:a="http://www.ietf.org"/>
         </e8>
      </e7>
   </e6>
</doc>`,
			want: `<doc>
   <e1></e1>
   <e2></e2>
   <e3 id="elem3" name="elem3"></e3>
   <e4 id="elem4" name="elem4"></e4>
   <e5 xmlns="http://example.org" xmlns:a="http://www.w3.org" xmlns:b="http://www.ietf.org" attr="I'm" attr2="all" b:attr="sorted" a:attr="out"></e5>
   <e6 xmlns:a="http://www.w3.org">
      <e7 xmlns="http://www.ietf.org">
         <e8 xmlns="">
            <e9 xmlns:a="http://www.ietf.org"></e9>
         </e8>
      </e7>
   </e6>
</doc>`},
		{name: "character modifications",
			in: `<doc>
   <text>First line&#x0d;&#10;Second line</text>
   <value>&#x32;</value>
   <compute><![CDATA[value>"0" && value<"10" ?"valid":"error"]]></compute>
   <compute expr='value>"0" &amp;&amp; value&lt;"10" ?"valid":"error"'>valid</compute>
   <norm attr=' &apos;   &#x20;&#13;&#xa;&#9;   &apos; '/>
   <!-- a comment -->
</doc>`,
			want: `<doc>
   <text>First line&#xD;
Second line</text>
   <value>2</value>
   <compute>value&gt;"0" &amp;&amp; value&lt;"10" ?"valid":"error"</compute>
   <compute expr="value>&quot;0&quot; &amp;&amp; value&lt;&quot;10&quot; ?&quot;valid&quot;:&quot;error&quot;">valid</compute>
   <norm attr=" '    &#xD;&#xA;&#x9;   ' "></norm>
   
</doc>`},
		{name: "apex renders its ancestors' namespaces",
			in:   `<a xmlns="urn:d" xmlns:p="urn:p" xmlns:z="urn:z"><b xmlns:q="urn:q" xmlns:z="urn:z"><c p:x="1" xmlns:z="urn:other"/></b></a>`,
			apex: "b",
			want: `<b xmlns="urn:d" xmlns:p="urn:p" xmlns:q="urn:q" xmlns:z="urn:z"><c xmlns:z="urn:other" p:x="1"></c></b>`},
		{name: "enveloped: the skipped element and nothing else goes",
			in:   "<a xmlns:s=\"urn:s\">\n<x/>\n<s:sig><s:v>1</s:v></s:sig></a>",
			skip: "s:sig",
			want: "<a xmlns:s=\"urn:s\">\n<x></x>\n</a>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, _, err := parseXMLForTest(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			apex := doc.Root()
			if tc.apex != "" {
				apex = doc.Root().FindElement(".//" + tc.apex)
			}
			var skip *etree.Element
			if tc.skip != "" {
				skip = doc.Root().FindElement(".//" + tc.skip)
			}
			if got, want := canonicalSHA384(apex, skip), sha512.Sum384([]byte(tc.want)); got != want {
				t.Errorf("canonicalSHA384 is not the SHA-384 of the canonical form")
			}
			if got := string(canonicalize(apex, skip)); got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// parseXMLForTest reads a document the way ParseRIM does, without requiring a RIM.
func parseXMLForTest(s string) (*etree.Document, []*etree.Element, error) {
	doc := etree.NewDocument()
	doc.ReadSettings = rimReadSettings()
	if err := doc.ReadFromString(s); err != nil {
		return nil, nil, err
	}
	if doc.Root() == nil {
		return nil, nil, errors.New("no document element")
	}
	var sigs []*etree.Element
	return doc, sigs, vet(doc.Root(), &sigs)
}
