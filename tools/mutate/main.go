// Command mutate is a mutation-testing runner over hand-written semantic
// mutants of the library's core files. Each mutant (mutants.txt) replaces
// one exact snippet of one file with a version that breaks one rule of the
// chain; the root package's tests must then fail. A mutant the tests do not
// catch is either equivalent (it changes no behaviour: the data file says
// why, and it is left out of the score) or a test gap.
//
// The runner never touches the repository it is given: it copies it once to
// a temporary directory (HEAD, or with -worktree the files on disk), and
// for each mutant writes the mutated file there, runs
//
//	go test -count=1 -failfast -timeout 180s -vet=off .
//
// in the copy's root, restores the file, and classifies the mutant as
// KILLED (the tests fail or time out), SURVIVED (they pass) or INVALID (the
// snippet is missing or not unique, or the mutant does not build). It ends
// with a table and the score, killed / (killed + survived), over the
// mutants not marked equivalent.
//
// Usage, from the repository's root:
//
//	go run ./tools/mutate                 # every mutant, on HEAD
//	go run ./tools/mutate -only batch-    # mutants whose name starts so
//	go run ./tools/mutate -list           # check the snippets and list them
//	go run ./tools/mutate -worktree       # on the uncommitted tree
//
// It is not run by CI: a run takes about 20 minutes on two cores.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// A mutant is one hand-written change to one file.
type mutant struct {
	name       string
	file       string // relative to the repository's root
	rule       string // the rule of the library the change breaks
	equivalent string // why it changes no behaviour, if it does not
	old, new   string
	line       int // in the data file
}

// An outcome is what the tests made of a mutant.
type outcome int

const (
	killed outcome = iota
	survived
	invalid
)

func (o outcome) String() string {
	return [...]string{"KILLED", "SURVIVED", "INVALID"}[o]
}

type result struct {
	m      *mutant
	out    outcome
	detail string
	took   time.Duration
}

func main() {
	var (
		repo     = flag.String("repo", ".", "the repository to mutate (it is copied, never modified)")
		only     = flag.String("only", "", "run only mutants whose name has one of these comma-separated prefixes")
		list     = flag.Bool("list", false, "check every mutant's snippet against the repository and list the mutants; run nothing")
		data     = flag.String("mutants", "", "the mutants file (default <repo>/tools/mutate/mutants.txt)")
		worktree = flag.Bool("worktree", false, "copy the files on disk (tracked and untracked, not ignored) instead of HEAD")
		timeout  = flag.Duration("timeout", 180*time.Second, "go test -timeout for each mutant")
		short    = flag.Bool("short", false, "pass -short to go test")
		keep     = flag.Bool("keep", false, "keep the temporary copy")
		verbose  = flag.Bool("v", false, "print the test output of each survivor and invalid mutant")
	)
	flag.Parse()
	if flag.NArg() != 0 {
		fatalf("unexpected arguments %q", flag.Args())
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		fatalf("%v", err)
	}
	if *data == "" {
		*data = filepath.Join(root, "tools", "mutate", "mutants.txt")
	}
	ms, err := parseMutants(*data)
	if err != nil {
		fatalf("%v", err)
	}
	ms, err = selectMutants(ms, *only)
	if err != nil {
		fatalf("%v", err)
	}

	if *list {
		bad := 0
		for _, m := range ms {
			src, err := os.ReadFile(filepath.Join(root, m.file))
			status := "ok"
			if err != nil {
				status = err.Error()
			} else if n := strings.Count(string(src), m.old); n != 1 {
				status = fmt.Sprintf("snippet found %d times", n)
			}
			if status != "ok" {
				bad++
			}
			eq := ""
			if m.equivalent != "" {
				eq = " [equivalent]"
			}
			fmt.Printf("%-32s %-12s %s%s\n    %s\n", m.name, m.file, status, eq, m.rule)
		}
		fmt.Printf("%d mutants, %d with a bad snippet\n", len(ms), bad)
		if bad > 0 {
			os.Exit(1)
		}
		return
	}

	tmp, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		fatalf("%v", err)
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "copy kept in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if *worktree {
		err = copyWorktree(root, tmp)
	} else {
		err = copyHead(root, tmp)
	}
	if err != nil {
		fatalf("copying %s: %v", root, err)
	}

	testArgs := []string{"test", "-count=1", "-failfast", "-timeout", timeout.String(), "-vet=off"}
	if *short {
		testArgs = append(testArgs, "-short")
	}
	testArgs = append(testArgs, ".")

	start := time.Now()
	fmt.Fprintf(os.Stderr, "baseline: go %s\n", strings.Join(testArgs, " "))
	if out, _, ok := runTests(tmp, testArgs, *timeout); !ok {
		os.Stderr.Write(out)
		fatalf("the tests fail without any mutant: fix that first")
	}
	fmt.Fprintf(os.Stderr, "baseline passed in %v\n", time.Since(start).Round(time.Second))

	var results []result
	for i, m := range ms {
		r := runMutant(tmp, m, testArgs, *timeout)
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "[%d/%d] %-32s %-8s %5.1fs %s\n", i+1, len(ms), m.name, r.out, r.took.Seconds(), r.detail)
		if *verbose && r.out != killed && r.detail != "" {
			fmt.Fprintln(os.Stderr, r.detail)
		}
	}
	report(os.Stdout, results, time.Since(start))
}

// runMutant applies m in the copy at dir, runs the tests, and restores the
// file.
func runMutant(dir string, m *mutant, testArgs []string, timeout time.Duration) result {
	path := filepath.Join(dir, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return result{m: m, out: invalid, detail: err.Error()}
	}
	if n := bytes.Count(orig, []byte(m.old)); n != 1 {
		return result{m: m, out: invalid, detail: fmt.Sprintf("snippet found %d times", n)}
	}
	mutated := bytes.Replace(orig, []byte(m.old), []byte(m.new), 1)
	if err := os.WriteFile(path, mutated, 0o644); err != nil {
		fatalf("%v", err)
	}
	defer func() {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			fatalf("restoring %s: %v", path, err)
		}
	}()

	start := time.Now()
	out, timedOut, ok := runTests(dir, testArgs, timeout)
	r := result{m: m, took: time.Since(start)}
	switch {
	case ok:
		r.out = survived
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		r.out, r.detail = invalid, "does not build: "+firstLine(out, buildError)
	default:
		r.out, r.detail = killed, why(out, timedOut)
	}
	return r
}

// runTests runs go with args in dir and reports its output, whether it
// had to be stopped, and whether it passed.
func runTests(dir string, args []string, timeout time.Duration) (out []byte, timedOut, ok bool) {
	// go test panics the test binary at -timeout; this bound is for a
	// go command that hangs besides.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return out, true, false
	}
	return out, bytes.Contains(out, []byte("panic: test timed out")), err == nil
}

var (
	failLine   = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)
	panicLine  = regexp.MustCompile(`(?m)^(panic: .*|fatal error: .*)$`)
	buildError = regexp.MustCompile(`(?m)^\S+\.go:\d+:\d+: .*$`)
)

// why names what killed a mutant: the first failing test, or the panic.
func why(out []byte, timedOut bool) string {
	if timedOut {
		if m := regexp.MustCompile(`(?m)^\s+(Test\S+) \(\d`).FindSubmatch(out); m != nil {
			return "timed out in " + string(m[1])
		}
		return "timed out"
	}
	if m := failLine.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	if m := panicLine.Find(out); m != nil {
		return truncate(string(m), 90)
	}
	return "tests failed"
}

func firstLine(out []byte, re *regexp.Regexp) string {
	if m := re.Find(out); m != nil {
		return truncate(string(m), 120)
	}
	return truncate(strings.TrimSpace(string(out)), 120)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// report prints the table of results and the score.
func report(w io.Writer, rs []result, took time.Duration) {
	var k, s, inv, eqSurvived, eqKilled int
	fmt.Fprintf(w, "\n| mutant | file | result | time | detail |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		res := r.out.String()
		if r.m.equivalent != "" {
			res += " (equivalent)"
		}
		detail := r.detail
		if r.out == survived {
			if r.m.equivalent != "" {
				detail = "equivalent: " + r.m.equivalent
			} else {
				detail = "breaks: " + r.m.rule
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0fs | %s |\n", r.m.name, r.m.file, res, r.took.Seconds(),
			strings.ReplaceAll(detail, "|", `\|`))
		switch {
		case r.out == invalid:
			inv++
		case r.m.equivalent != "" && r.out == survived:
			eqSurvived++
		case r.m.equivalent != "":
			eqKilled++
		case r.out == killed:
			k++
		default:
			s++
		}
	}
	fmt.Fprintf(w, "\n%d mutants in %v: %d killed, %d survived, %d invalid, %d equivalent (left out of the score)\n",
		len(rs), took.Round(time.Second), k, s, inv, eqSurvived+eqKilled)
	if eqKilled > 0 {
		fmt.Fprintf(w, "warning: %d mutants marked equivalent were killed: they change behaviour after all; review them\n", eqKilled)
	}
	if k+s > 0 {
		fmt.Fprintf(w, "score: %d/%d = %.1f%% of behaviour-changing mutants killed\n", k, k+s, 100*float64(k)/float64(k+s))
	}
	for _, r := range rs {
		if r.out == survived && r.m.equivalent == "" {
			fmt.Fprintf(w, "survivor: %s (%s): %s\n", r.m.name, r.m.file, r.m.rule)
		}
	}
}

// parseMutants reads the data file. A mutant is
//
//	mutant NAME
//	file FILE
//	rule WHAT IT BREAKS
//	equivalent WHY (optional)
//	<<<
//	original lines
//	===
//	replacement lines
//	>>>
//
// Lines starting with # and blank lines between mutants are ignored.
func parseMutants(path string) ([]*mutant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		ms    []*mutant
		cur   *mutant
		state int // 0 header, 1 old, 2 new
		buf   []string
		names = map[string]bool{}
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		errAt := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", path, ln, fmt.Sprintf(format, args...))
		}
		switch state {
		case 1, 2:
			switch {
			case line == "===" && state == 1:
				cur.old, buf, state = strings.Join(buf, "\n"), nil, 2
			case line == ">>>" && state == 2:
				cur.new, buf, state = strings.Join(buf, "\n"), nil, 0
				if cur.old == "" || cur.old == cur.new {
					return nil, errAt("mutant %s: empty or unchanged snippet", cur.name)
				}
				ms = append(ms, cur)
				cur = nil
			case line == "<<<" || line == "===" || line == ">>>":
				return nil, errAt("unexpected %s", line)
			default:
				buf = append(buf, line)
			}
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		key, val, _ := strings.Cut(trimmed, " ")
		val = strings.TrimSpace(val)
		switch key {
		case "mutant":
			if cur != nil {
				return nil, errAt("mutant %s has no snippet", cur.name)
			}
			if names[val] {
				return nil, errAt("mutant %s defined twice", val)
			}
			names[val] = true
			cur = &mutant{name: val, line: ln}
		case "file", "rule", "equivalent", "<<<":
			if cur == nil {
				return nil, errAt("%s outside a mutant", key)
			}
			switch key {
			case "file":
				cur.file = val
			case "rule":
				cur.rule = val
			case "equivalent":
				cur.equivalent = val
			case "<<<":
				if cur.file == "" || cur.rule == "" {
					return nil, errAt("mutant %s needs a file and a rule", cur.name)
				}
				state = 1
			}
		default:
			return nil, errAt("unknown line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil || state != 0 {
		return nil, errors.New(path + ": the last mutant is not finished")
	}
	return ms, nil
}

func selectMutants(ms []*mutant, only string) ([]*mutant, error) {
	if only == "" {
		return ms, nil
	}
	var sel []*mutant
	for _, m := range ms {
		for _, p := range strings.Split(only, ",") {
			if p = strings.TrimSpace(p); p != "" && strings.HasPrefix(m.name, p) {
				sel = append(sel, m)
				break
			}
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("no mutant matches -only %q", only)
	}
	return sel, nil
}

// copyHead extracts the repository's HEAD into dst.
func copyHead(repo, dst string) error {
	cmd := exec.Command("git", "-C", repo, "archive", "--format=tar", "HEAD")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	tr := tar.NewReader(pipe)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		path := filepath.Join(dst, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, dst+string(filepath.Separator)) {
			return fmt.Errorf("bad path in archive: %q", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			err = writeFrom(path, tr, os.FileMode(h.Mode)&0o777)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, path)
		}
		if err != nil {
			return err
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive: %v: %s", err, stderr.String())
	}
	return nil
}

// copyWorktree copies the files git knows of or would (tracked, and
// untracked but not ignored), as they are on disk, into dst.
func copyWorktree(repo, dst string) error {
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" {
			continue
		}
		src := filepath.Join(repo, filepath.FromSlash(name))
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted, not yet committed
		}
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		err = writeFrom(filepath.Join(dst, filepath.FromSlash(name)), f, fi.Mode().Perm())
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func writeFrom(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mutate: "+format+"\n", args...)
	os.Exit(2)
}
