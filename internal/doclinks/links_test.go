package doclinks

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository's root, seen from this package's directory.
const root = "../.."

var (
	// inlineLink matches [text](target) and ![alt](target), with an optional "title".
	inlineLink = regexp.MustCompile(`\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+"[^"]*")?\s*\)`)
	// refLink matches a reference definition: [name]: target.
	refLink = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s+(<[^>]*>|\S+)`)
	// codeSpan matches inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`+[^`]*`+")
	// heading matches an ATX heading and captures its text.
	heading = regexp.MustCompile(`^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)
	// fence opens or closes a fenced code block.
	fence = regexp.MustCompile("^\\s{0,3}(```|~~~)")
	// linkText matches a link in a heading, whose anchor keeps only the text.
	linkText = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
)

// link is one link target found in a markdown file.
type link struct {
	line   int
	target string
}

// scan returns the link targets of a markdown document and the anchors its
// headings produce, skipping fenced code blocks and inline code.
func scan(text string) (links []link, anchors map[string]bool) {
	anchors = map[string]bool{}
	seen := map[string]int{}
	inFence := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := fence.FindStringSubmatch(line); m != nil {
			switch inFence {
			case "":
				inFence = m[1]
			case m[1]:
				inFence = ""
			}
			continue
		}
		if inFence != "" {
			continue
		}
		if m := heading.FindStringSubmatch(line); m != nil {
			a := slug(m[1])
			if k := seen[a]; k > 0 {
				anchors[fmt.Sprintf("%s-%d", a, k)] = true
			} else {
				anchors[a] = true
			}
			seen[a]++
		}
		plain := codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(plain, -1) {
			links = append(links, link{n, strings.Trim(m[1], "<>")})
		}
		if m := refLink.FindStringSubmatch(plain); m != nil {
			links = append(links, link{n, strings.Trim(m[1], "<>")})
		}
	}
	return links, anchors
}

// slug is the anchor GitHub gives a heading: markdown links reduced to their
// text, lower case, punctuation dropped except '-' and '_', spaces to '-'.
func slug(h string) string {
	h = linkText.ReplaceAllString(h, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// external reports whether a target leaves the repository or stays in the page.
func external(target string) bool {
	t := strings.ToLower(target)
	return strings.HasPrefix(t, "http://") || strings.HasPrefix(t, "https://") ||
		strings.HasPrefix(t, "mailto:") || strings.HasPrefix(t, "#")
}

// check returns a problem with target, linked from the markdown file from, or "".
func check(from, target string) string {
	escaped, fragment, _ := strings.Cut(target, "#")
	path, err := url.PathUnescape(escaped)
	if err != nil {
		return fmt.Sprintf("cannot unescape %q: %v", escaped, err)
	}
	dest := filepath.Join(filepath.Dir(from), filepath.FromSlash(path))
	if strings.HasPrefix(path, "/") {
		dest = filepath.Join(root, filepath.FromSlash(path))
	}
	shown := dest
	if rel, err := filepath.Rel(root, dest); err == nil {
		shown = filepath.ToSlash(rel)
	}
	info, err := os.Stat(dest)
	if err != nil {
		return fmt.Sprintf("%s does not exist", shown)
	}
	if fragment == "" || info.IsDir() {
		return ""
	}
	text, err := os.ReadFile(dest)
	if err != nil {
		return err.Error()
	}
	if !strings.EqualFold(filepath.Ext(dest), ".md") { // #L12: a line of a source file, which must hold code
		n, err := strconv.Atoi(strings.TrimPrefix(fragment, "L"))
		if lines := strings.Split(string(text), "\n"); err != nil || n < 1 || n > len(lines) || strings.TrimSpace(lines[n-1]) == "" {
			return fmt.Sprintf("#%s is no line of code in %s", fragment, shown)
		}
		return ""
	}
	if _, anchors := scan(string(text)); !anchors[strings.ToLower(fragment)] {
		return fmt.Sprintf("no heading of %s makes the anchor #%s", shown, fragment)
	}
	return ""
}

// TestLinks checks every relative link in the README and docs/*.md.
func TestLinks(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{filepath.Join(root, "README.md")}, docs...)
	if len(docs) == 0 {
		t.Fatalf("no markdown files in %s", filepath.Join(root, "docs"))
	}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		links, _ := scan(string(text))
		name, _ := filepath.Rel(root, file)
		for _, l := range links {
			if external(l.target) {
				continue
			}
			if problem := check(file, l.target); problem != "" {
				t.Errorf("%s:%d: link %q: %s", filepath.ToSlash(name), l.line, l.target, problem)
			}
		}
	}
}

func TestSlug(t *testing.T) {
	for _, tt := range []struct{ heading, want string }{
		{"Beyond one broker", "beyond-one-broker"},
		{"No registry? Build everything offline", "no-registry-build-everything-offline"},
		{"Delivery guarantees, honestly", "delivery-guarantees-honestly"},
		{"Metrics and trace context, 2026-12-05", "metrics-and-trace-context-2026-12-05"},
		{"librdkafka properties (`-X`)", "librdkafka-properties--x"},
		{"From the Python tutorial to this repository", "from-the-python-tutorial-to-this-repository"},
		{"A [linked](x.md) heading", "a-linked-heading"},
		{"snake_case stays", "snake_case-stays"},
	} {
		if got := slug(tt.heading); got != tt.want {
			t.Errorf("slug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

func TestScan(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		links      []string
		anchors    []string
	}{
		{"inline and image", "see [a](a.md) and ![b](img/b.png \"title\")", []string{"a.md", "img/b.png"}, nil},
		{"reference definition", "[a]: docs/a.md", []string{"docs/a.md"}, nil},
		{"angle brackets", "[a](<my file.md>)", []string{"my file.md"}, nil},
		{"code span is not a link", "`[a](b.md)` and [c](c.md)", []string{"c.md"}, nil},
		{"fenced code is skipped", "```sh\n# not a heading\n[a](b.md)\n```\n# Real", nil, []string{"real"}},
		{"repeated headings", "## Run\n## Run", nil, []string{"run", "run-1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			links, anchors := scan(tt.text)
			var got []string
			for _, l := range links {
				got = append(got, l.target)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.links) {
				t.Errorf("links = %q, want %q", got, tt.links)
			}
			for _, a := range tt.anchors {
				if !anchors[a] {
					t.Errorf("no anchor %q in %v", a, anchors)
				}
			}
			if len(anchors) != len(tt.anchors) {
				t.Errorf("anchors = %v, want %q", anchors, tt.anchors)
			}
		})
	}
}

func TestExternal(t *testing.T) {
	for _, tt := range []struct {
		target string
		want   bool
	}{
		{"https://github.com/ory/dockertest", true},
		{"http://localhost:9090", true},
		{"mailto:someone@example.com", true},
		{"#beyond-one-broker", true},
		{"docs/cluster.md", false},
		{"../README.md#quick-start", false},
	} {
		if got := external(tt.target); got != tt.want {
			t.Errorf("external(%q) = %v, want %v", tt.target, got, tt.want)
		}
	}
}
