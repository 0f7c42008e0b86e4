package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// parseYAML reads the part of YAML the recipes are written in: block
// mappings and sequences (a sequence may stand at its key's indentation),
// plain, single- and double-quoted scalars, one-line flow sequences of
// scalars, {} and [], literal and folded block scalars, comments, and
// documents separated by ---. Every scalar is a string. Anchors, aliases,
// tags and flow mappings are refused, and so is any indentation that does
// not fit, with the line: a recipe stays in what this test can check. (The
// module has no YAML library, and the recipes do not justify adding one.)
func parseYAML(src string) ([]any, error) {
	var docs []any
	var cur []string
	first := 1 // line number of cur[0]
	flush := func(next int) error {
		p := &yparser{lines: cur, first: first}
		v, err := p.document()
		if err != nil {
			return err
		}
		if v != nil {
			docs = append(docs, v)
		}
		cur, first = nil, next
		return nil
	}
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	for i, l := range lines {
		if t := stripComment(l); t == "---" || strings.HasPrefix(t, "--- ") {
			if err := flush(i + 2); err != nil {
				return nil, err
			}
			continue
		}
		cur = append(cur, l)
	}
	if err := flush(0); err != nil {
		return nil, err
	}
	return docs, nil
}

type yline struct {
	n      int // line number in the file
	indent int
	text   string // without indentation and comment
}

type yparser struct {
	lines   []string
	first   int
	i       int    // next raw line
	pending *yline // the mapping that starts on a sequence item's line
}

func (p *yparser) errorf(n int, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", n, fmt.Sprintf(format, args...))
}

// peek returns the next line that holds something, without taking it.
func (p *yparser) peek() (yline, bool, error) {
	if p.pending != nil {
		return *p.pending, true, nil
	}
	for j := p.i; j < len(p.lines); j++ {
		raw := p.lines[j]
		t := strings.TrimRight(stripComment(raw), " ")
		if strings.TrimSpace(t) == "" {
			continue
		}
		body := strings.TrimLeft(t, " ")
		if strings.HasPrefix(body, "\t") {
			return yline{}, false, p.errorf(p.first+j, "a tab in the indentation")
		}
		p.i = j
		return yline{n: p.first + j, indent: len(t) - len(body), text: body}, true, nil
	}
	p.i = len(p.lines)
	return yline{}, false, nil
}

func (p *yparser) take() {
	if p.pending != nil {
		p.pending = nil
		return
	}
	p.i++
}

func (p *yparser) document() (any, error) {
	l, ok, err := p.peek()
	if err != nil || !ok {
		return nil, err
	}
	v, err := p.node(l.indent)
	if err != nil {
		return nil, err
	}
	if l, ok, err := p.peek(); err != nil {
		return nil, err
	} else if ok {
		return nil, p.errorf(l.n, "indentation does not fit what came before")
	}
	return v, nil
}

func isItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

func (p *yparser) node(indent int) (any, error) {
	l, _, err := p.peek()
	if err != nil {
		return nil, err
	}
	if isItem(l.text) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

func (p *yparser) sequence(indent int) ([]any, error) {
	out := []any{}
	for {
		l, ok, err := p.peek()
		if err != nil {
			return nil, err
		}
		if !ok || l.indent < indent || (l.indent == indent && !isItem(l.text)) {
			return out, nil
		}
		if l.indent > indent {
			return nil, p.errorf(l.n, "indentation does not fit the sequence above")
		}
		p.take()
		rest := strings.TrimLeft(strings.TrimPrefix(l.text, "-"), " ")
		var item any
		switch {
		case rest == "":
			item, err = p.child(l)
		case startsMapping(rest):
			// "- key: value": a mapping whose keys stand where key stands.
			in := indent + len(l.text) - len(rest)
			p.pending = &yline{n: l.n, indent: in, text: rest}
			item, err = p.mapping(in)
		default:
			item, err = scalar(rest, l.n)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, item)
	}
}

// child is the node under a key or item with nothing after it: more
// indented, or (for a key) a sequence at the key's own indentation.
func (p *yparser) child(parent yline) (any, error) {
	l, ok, err := p.peek()
	if err != nil || !ok {
		return nil, err
	}
	switch {
	case l.indent > parent.indent:
		return p.node(l.indent)
	case l.indent == parent.indent && isItem(l.text) && !isItem(parent.text):
		return p.sequence(l.indent)
	}
	return nil, nil
}

func (p *yparser) mapping(indent int) (map[string]any, error) {
	out := map[string]any{}
	for {
		l, ok, err := p.peek()
		if err != nil {
			return nil, err
		}
		if !ok || l.indent < indent {
			return out, nil
		}
		if l.indent > indent {
			return nil, p.errorf(l.n, "indentation does not fit the mapping above")
		}
		if isItem(l.text) {
			return nil, p.errorf(l.n, "a sequence item where a key was expected")
		}
		p.take()
		key, rest, ok := splitKey(l.text)
		if !ok {
			return nil, p.errorf(l.n, "want key: value, have %q", l.text)
		}
		if _, dup := out[key]; dup {
			return nil, p.errorf(l.n, "key %q twice", key)
		}
		var v any
		switch {
		case rest == "":
			v, err = p.child(l)
		case rest[0] == '|' || rest[0] == '>':
			v = p.block(l, rest[0] == '>')
		default:
			v, err = scalar(rest, l.n)
		}
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
}

// block reads a literal (|) or folded (>) scalar: the raw lines indented
// more than its key.
func (p *yparser) block(parent yline, folded bool) string {
	var body []string
	min := -1
	for ; p.i < len(p.lines); p.i++ {
		raw := p.lines[p.i]
		body0 := strings.TrimLeft(raw, " ")
		if body0 == "" {
			body = append(body, "")
			continue
		}
		in := len(raw) - len(body0)
		if in <= parent.indent {
			break
		}
		if min < 0 || in < min {
			min = in
		}
		body = append(body, raw)
	}
	for j, b := range body {
		if len(b) >= min && min >= 0 {
			body[j] = b[min:]
		}
	}
	sep := "\n"
	if folded {
		sep = " "
	}
	return strings.TrimRight(strings.Join(body, sep), "\n ") + "\n"
}

// startsMapping reports whether an item's text is "key: value" or "key:".
func startsMapping(s string) bool {
	if s[0] == '[' || s[0] == '{' {
		return false
	}
	_, _, ok := splitKey(s)
	return ok
}

// splitKey splits "key: value" (the key plain or quoted).
func splitKey(s string) (key, rest string, ok bool) {
	if s[0] == '"' || s[0] == '\'' {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return "", "", false
		}
		key, after := s[1:end+1], s[end+2:]
		if after != ":" && !strings.HasPrefix(after, ": ") {
			return "", "", false
		}
		return key, strings.TrimSpace(strings.TrimPrefix(after, ":")), true
	}
	if strings.HasSuffix(s, ":") && !strings.Contains(s, ": ") {
		return s[:len(s)-1], "", true
	}
	k, v, found := strings.Cut(s, ": ")
	if !found || k == "" {
		return "", "", false
	}
	return k, strings.TrimSpace(v), true
}

func scalar(s string, n int) (any, error) {
	bad := func(why string) error { return fmt.Errorf("line %d: %s: %q", n, why, s) }
	switch {
	case s == "{}":
		return map[string]any{}, nil
	case s[0] == '{':
		return nil, bad("flow mappings are not in the subset")
	case s[0] == '&' || s[0] == '*' || s[0] == '!':
		return nil, bad("anchors, aliases and tags are not in the subset")
	case s[0] == '[':
		if !strings.HasSuffix(s, "]") {
			return nil, bad("a flow sequence must close on its line")
		}
		out := []any{}
		inner := strings.TrimSpace(s[1 : len(s)-1])
		if inner == "" {
			return out, nil
		}
		for _, part := range splitFlow(inner) {
			v, err := scalar(strings.TrimSpace(part), n)
			if err != nil {
				return nil, err
			}
			if _, isStr := v.(string); !isStr {
				return nil, bad("a flow sequence holds scalars only")
			}
			out = append(out, v)
		}
		return out, nil
	case s[0] == '"':
		v, err := strconv.Unquote(s)
		if err != nil {
			return nil, bad("not one double-quoted string")
		}
		return v, nil
	case s[0] == '\'':
		if len(s) < 2 || s[len(s)-1] != '\'' {
			return nil, bad("not one single-quoted string")
		}
		inner := s[1 : len(s)-1]
		if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
			return nil, bad("not one single-quoted string")
		}
		return strings.ReplaceAll(inner, "''", "'"), nil
	}
	return s, nil
}

// splitFlow splits a flow sequence's items at commas outside quotes.
func splitFlow(s string) []string {
	var parts []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' {
				i++
			}
		case c == '"' || c == '\'':
			quote = c
		case c == ',':
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// stripComment cuts a # comment (at the start or after a blank, outside
// quotes) off a line.
func stripComment(l string) string {
	var quote byte
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			if i == 0 || strings.ContainsRune(" [,:-", rune(l[i-1])) {
				quote = c
			}
		case c == '#' && (i == 0 || l[i-1] == ' '):
			return l[:i]
		}
	}
	return l
}

// TestParseYAML: the subset parser reads what the recipes need and refuses
// what it cannot read, naming the line.
func TestParseYAML(t *testing.T) {
	src := `# a comment
name: demo # trailing comment
list:
- a
- "b # not a comment"
nested:
  items:
    - name: x
      value: '1'
      args: ["serve", "--x"]
    - plain: http://host:8080/path
  empty: {}
script: |
  echo one
    echo two
after: z
---
second: doc
`
	docs, err := parseYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("%d documents, want 2", len(docs))
	}
	d := docs[0].(map[string]any)
	items := d["nested"].(map[string]any)["items"].([]any)
	for _, check := range []struct{ got, want any }{
		{d["name"], "demo"},
		{d["list"].([]any)[1], "b # not a comment"},
		{items[0].(map[string]any)["value"], "1"},
		{items[0].(map[string]any)["args"].([]any)[1], "--x"},
		{items[1].(map[string]any)["plain"], "http://host:8080/path"},
		{d["script"], "echo one\n  echo two\n"},
		{d["after"], "z"},
		{docs[1].(map[string]any)["second"], "doc"},
	} {
		if check.got != check.want {
			t.Errorf("got %q, want %q", check.got, check.want)
		}
	}
	for _, bad := range []string{
		"a: 1\n   b: 2\n",
		"a:\n  - x\n   - y\n",
		"a: [x, y\n",
		"a: *alias\n",
		"a: {b: c}\n",
		"a: 1\na: 2\n",
		"a:\n\t- x\n",
		"just text\n",
	} {
		if _, err := parseYAML(bad); err == nil || !strings.HasPrefix(err.Error(), "line ") {
			t.Errorf("%q: err %v, want one naming the line", bad, err)
		}
	}
}
