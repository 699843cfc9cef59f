package deferred_test

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeCodeIsRealCode checks that every ```go block of README.md is
// an excerpt of a .go file of the repository, so that the README's code
// compiles and runs wherever that file's tests do, and cannot drift from it.
//
// A block matches a file when its lines, each with its runs of whitespace
// collapsed to one space and blank lines left out, appear one after another
// in the file's lines treated the same way. A line "// ..." in a block
// skips any number of lines of the file.
func TestReadmeCodeIsRealCode(t *testing.T) {
	blocks := readmeGoBlocks(t, "README.md")
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```go block: the test would check nothing")
	}
	files := repoGoFiles(t, ".", "readme_test.go")

	for _, b := range blocks {
		if !b.closed {
			t.Errorf("README.md:%d: the ```go block starting %q has no closing ```", b.line, b.first())
			continue
		}
		best, bestFile := -1, ""
		for _, f := range files {
			if n := matchedLines(b.parts, f.lines); n == b.lineCount() {
				best = n
				break
			} else if n > best {
				best, bestFile = n, f.path
			}
		}
		if best == b.lineCount() {
			continue
		}
		msg := fmt.Sprintf("README.md:%d: the ```go block starting %q is not an excerpt of any .go file in the repository.\n"+
			"Make the README show the code as it is, or change the code it comes from.", b.line, b.first())
		if bestFile != "" && best > 0 {
			msg += fmt.Sprintf("\nClosest: %s has the block's first %d of %d lines; the next one, README.md:%d %q, differs.",
				bestFile, best, b.lineCount(), b.lineNumbers[best], b.nth(best))
		}
		t.Error(msg)
	}
}

// readmeBlock is one ```go block of the README, split at its "// ..." lines
// into parts that must follow each other in one file.
type readmeBlock struct {
	line        int        // line of the opening fence
	parts       [][]string // normalised lines
	lineNumbers []int      // README line of each normalised line, across parts
	closed      bool
}

func (b readmeBlock) lineCount() int {
	n := 0
	for _, p := range b.parts {
		n += len(p)
	}
	return n
}

// nth returns the block's nth normalised line, counting across parts.
func (b readmeBlock) nth(n int) string {
	for _, p := range b.parts {
		if n < len(p) {
			return p[n]
		}
		n -= len(p)
	}
	return ""
}

func (b readmeBlock) first() string { return b.nth(0) }

// readmeGoBlocks returns the ```go blocks of the Markdown file at path,
// indented ones (inside list items) included.
func readmeGoBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var blocks []readmeBlock
	var cur *readmeBlock
	inOther := false // inside a block of another language
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case cur != nil && line == "```":
			cur.closed = true
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil && (line == "// ..." || line == "// …"):
			cur.parts = append(cur.parts, nil)
		case cur != nil:
			if l := normalise(line); l != "" {
				p := &cur.parts[len(cur.parts)-1]
				*p = append(*p, l)
				cur.lineNumbers = append(cur.lineNumbers, n)
			}
		case inOther:
			inOther = line != "```"
		case line == "```go":
			cur = &readmeBlock{line: n, parts: [][]string{nil}}
		case strings.HasPrefix(line, "```"):
			inOther = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		blocks = append(blocks, *cur)
	}
	return blocks
}

type goFile struct {
	path  string
	lines []string // normalised, blank lines left out
}

// repoGoFiles returns the .go files under root, leaving out skip, testdata
// and hidden directories.
func repoGoFiles(t *testing.T, root, skip string) []goFile {
	t.Helper()
	var files []goFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || path == skip {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var lines []string
		for l := range strings.Lines(string(src)) {
			if l := normalise(l); l != "" {
				lines = append(lines, l)
			}
		}
		files = append(files, goFile{path: filepath.ToSlash(path), lines: lines})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .go file under %s", root)
	}
	return files
}

// normalise collapses every run of whitespace in line to one space and
// trims both ends.
func normalise(line string) string {
	return strings.Join(strings.Fields(line), " ")
}

// matchedLines reports how many of the parts' lines lines contains: all of
// them when every part appears as a run of consecutive lines, each part
// after the one before; otherwise the longest run it found from the start.
func matchedLines(parts [][]string, lines []string) int {
	return matchFrom(parts, lines, 0)
}

func matchFrom(parts [][]string, lines []string, from int) int {
	if len(parts) == 0 {
		return 0
	}
	part, best := parts[0], 0
	for i := from; i < len(lines); i++ {
		n := 0
		for n < len(part) && i+n < len(lines) && lines[i+n] == part[n] {
			n++
		}
		if n == len(part) {
			rest := matchFrom(parts[1:], lines, i+n)
			if n+rest > best {
				best = n + rest
			}
			if rest == countLines(parts[1:]) {
				return best
			}
		} else if n > best {
			best = n
		}
	}
	return best
}

func countLines(parts [][]string) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n
}

func TestReadmeMatchedLines(t *testing.T) {
	file := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		name  string
		parts [][]string
		want  int
	}{
		{"a run", [][]string{{"b", "c"}}, 2},
		{"the whole file", [][]string{file}, 5},
		{"a gap where the block says // ...", [][]string{{"a"}, {"d", "e"}}, 3},
		{"parts out of order", [][]string{{"d"}, {"a"}}, 1},
		{"a line differs", [][]string{{"b", "x", "d"}}, 1},
		{"no line matches", [][]string{{"x"}}, 0},
		{"lines apart are not a run", [][]string{{"a", "c"}}, 1},
	} {
		if got := matchedLines(tc.parts, file); got != tc.want {
			t.Errorf("%s: matchedLines(%q) = %d, want %d", tc.name, tc.parts, got, tc.want)
		}
	}
}
