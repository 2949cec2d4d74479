package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v2"
)

// workflowFile is the CI workflow users get on GitHub.
const workflowFile = ".github/workflows/ci.yml"

// leftToGitHub are the workflow's jobs that this machine cannot run as a
// runner does, each with the reason. Every other job runs in
// TestWorkflow_registryFreeJobs, so a new job is tested here unless it is
// named below.
var leftToGitHub = map[string]string{
	"e2e":   "pulls apache/kafka and the golang base image from a registry",
	"image": "installs packages with sudo on the runner; .ci/run builds the same image here",
}

// The workflow's jobs that need no container registry (lint and the unit
// tests of each module), run from a clean copy of the repository the way a
// GitHub runner runs them: the job's default working directory, the step's
// environment, every matrix value, and the steps' if: conditions. A failed
// step fails the test with its name and its last lines.
func TestWorkflow_registryFreeJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lint and every module's unit tests: skipped with -short")
	}
	if os.Getenv("GITHUB_ACTIONS") == "true" {
		t.Skip("on GitHub the workflow's own jobs run these steps")
	}
	wf, err := loadWorkflow(filepath.Join(repoRoot, workflowFile))
	if err != nil {
		t.Fatal(err)
	}
	checkout := cleanCopy(t)
	for _, id := range slices.Sorted(maps.Keys(wf.Jobs)) {
		if why, ok := leftToGitHub[id]; ok {
			t.Logf("job %s: left to GitHub (%s)", id, why)
			continue
		}
		combos, err := wf.Jobs[id].matrixCombinations()
		if err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		for _, matrix := range combos {
			r := runner{dir: checkout, wf: wf, jobID: id, matrix: matrix}
			name, err := r.expand(wf.Jobs[id].displayName(id))
			if err != nil {
				t.Fatalf("job %s: name: %v", id, err)
			}
			t.Run(name, func(t *testing.T) {
				start := time.Now()
				steps, err := r.run()
				for _, s := range steps {
					t.Logf("%-8s %s (%s)", s.outcome, s.name, s.took.Round(100*time.Millisecond))
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("job %q passed in %s", name, time.Since(start).Round(time.Second))
			})
		}
	}
}

// The runner itself must be able to fail: a broken run: step fails the job
// with the step's name and its last lines, and matrix values, if:
// conditions, working directories and env reach the steps as on GitHub.
func TestWorkflow_runnerFollowsGitHubRules(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const file = `
on: push
env:
  WHO: workflow
jobs:
  unit:
    name: Unit (${{ matrix.module }})
    runs-on: ubuntu-24.04
    strategy:
      matrix:
        module: [a, b]
    defaults:
      run:
        working-directory: ${{ matrix.module }}
    steps:
      - uses: actions/checkout@v4
      - name: Where and who
        env:
          WHO: step
        run: echo "$(basename "$PWD") $WHO ${{ matrix.module }}" >> ../seen
      - name: Writes GITHUB_ENV
        run: printf 'FROM_FILE=file\nBOTH=file\n' >> "$GITHUB_ENV"
      - name: Reads it, its own env first
        env:
          BOTH: step
        run: echo "$FROM_FILE $BOTH ${KAFKA_IMAGE:-clean}" >> ../seen
      - name: Only for b
        if: matrix.module == 'b' && !(matrix.module != 'b') && 'a b' == 'A B'
        run: echo "only-b" >> ../seen
      - name: Broken in b
        if: ${{ matrix.module != 'a' }}
        run: |
          echo "first line"
          echo "the reason it broke" >&2
          false
          echo "never printed"
      - name: After a failure
        run: echo "after" >> ../seen
      - name: After a failure, with a condition that holds
        if: matrix.module != 'a'
        run: echo "conditional-after-failure" >> ../seen
      - name: On failure
        if: failure()
        run: echo "on-failure ${{ matrix.module }}" >> ../seen
`
	path := filepath.Join(dir, "ci.yml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	wf, err := loadWorkflow(path)
	if err != nil {
		t.Fatal(err)
	}
	combos, err := wf.Jobs["unit"].matrixCombinations()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KAFKA_IMAGE", "a developer's export")
	var errs []error
	for _, m := range combos {
		_, err := (&runner{dir: dir, wf: wf, jobID: "unit", matrix: m}).run()
		errs = append(errs, err)
	}
	if len(errs) != 2 || errs[0] != nil {
		t.Fatalf("job (a) should pass and (b) fail; got %v", errs)
	}
	msg := fmt.Sprint(errs[1])
	for _, want := range []string{`step "Broken in b" failed`, "the reason it broke", "first line"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure of (b) does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "never printed") {
		t.Errorf("the failed step went on after its failing command (bash -e):\n%s", msg)
	}
	seen, err := os.ReadFile(filepath.Join(dir, "seen"))
	if err != nil {
		t.Fatal(err)
	}
	want := "a step a\nfile step clean\nafter\nb step b\nfile step clean\nonly-b\non-failure b\n"
	if string(seen) != want {
		t.Errorf("steps wrote\n%s\nwant\n%s", seen, want)
	}
}

// workflow is the part of a GitHub Actions workflow a runner needs to run
// its run: steps. Unknown keys are an error, so that a feature of the file
// this runner does not follow cannot pass unnoticed.
type workflow struct {
	Name        string            `yaml:"name"`
	On          any               `yaml:"on"`
	Permissions any               `yaml:"permissions"`
	Concurrency any               `yaml:"concurrency"`
	Env         map[string]string `yaml:"env"`
	Defaults    defaults          `yaml:"defaults"`
	Jobs        map[string]job    `yaml:"jobs"`
}

type defaults struct {
	Run struct {
		Shell            string `yaml:"shell"`
		WorkingDirectory string `yaml:"working-directory"`
	} `yaml:"run"`
}

type job struct {
	Name           string            `yaml:"name"`
	RunsOn         any               `yaml:"runs-on"`
	Needs          any               `yaml:"needs"`
	TimeoutMinutes int               `yaml:"timeout-minutes"`
	Env            map[string]string `yaml:"env"`
	Defaults       defaults          `yaml:"defaults"`
	Strategy       struct {
		FailFast *bool                    `yaml:"fail-fast"`
		Matrix   map[string][]interface{} `yaml:"matrix"`
	} `yaml:"strategy"`
	Steps []step `yaml:"steps"`
}

type step struct {
	Name             string            `yaml:"name"`
	Uses             string            `yaml:"uses"`
	With             map[string]any    `yaml:"with"`
	Run              string            `yaml:"run"`
	If               string            `yaml:"if"`
	Shell            string            `yaml:"shell"`
	Env              map[string]string `yaml:"env"`
	WorkingDirectory string            `yaml:"working-directory"`
}

// loadWorkflow parses a workflow file strictly.
func loadWorkflow(path string) (*workflow, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var wf workflow
	if err := yaml.UnmarshalStrict(b, &wf); err != nil {
		return nil, fmt.Errorf("%s: %w (a key this runner does not know: teach it, or leave the job to GitHub)", path, err)
	}
	if len(wf.Jobs) == 0 {
		return nil, fmt.Errorf("%s: no jobs", path)
	}
	return &wf, nil
}

// displayName is the job's name as GitHub shows it.
func (j job) displayName(id string) string {
	if j.Name != "" {
		return j.Name
	}
	return id
}

// matrixCombinations lists the job's matrix values, one map per run; a
// job without a matrix runs once. include and exclude are not followed.
func (j job) matrixCombinations() ([]map[string]string, error) {
	combos := []map[string]string{{}}
	for _, key := range slices.Sorted(maps.Keys(j.Strategy.Matrix)) {
		if key == "include" || key == "exclude" {
			return nil, fmt.Errorf("matrix %s is not followed by this runner", key)
		}
		var next []map[string]string
		for _, c := range combos {
			for _, v := range j.Strategy.Matrix[key] {
				m := map[string]string{key: fmt.Sprint(v)}
				for k, v := range c {
					m[k] = v
				}
				next = append(next, m)
			}
		}
		combos = next
	}
	return combos, nil
}

// runner runs one job of a workflow, for one matrix combination, in dir.
type runner struct {
	dir    string
	wf     *workflow
	jobID  string
	matrix map[string]string
	failed bool // a step failed: the job's status is failure()
}

// stepResult is how one step went.
type stepResult struct {
	name    string
	outcome string // success, failure or skipped
	took    time.Duration
}

// run runs the job's steps in order and returns the first failure.
func (r *runner) run() ([]stepResult, error) {
	j := r.wf.Jobs[r.jobID]
	f, err := os.CreateTemp("", "github-env-*")
	if err != nil {
		return nil, err
	}
	f.Close()
	envFile := f.Name()
	defer os.Remove(envFile)
	var results []stepResult
	var firstErr error
	for i, s := range j.Steps {
		name := s.Name
		switch {
		case name == "" && s.Uses != "":
			name = "Run " + s.Uses
		case name == "":
			name = "Run " + firstLineOf(s.Run)
		}
		name, err := r.expand(name)
		if err != nil {
			return results, fmt.Errorf("step %d: name: %w", i+1, err)
		}
		ok, err := r.condition(s.If)
		if err != nil {
			return results, fmt.Errorf("step %q: if: %w", name, err)
		}
		if !ok {
			results = append(results, stepResult{name, "skipped", 0})
			continue
		}
		start := time.Now()
		err = r.step(s, envFile)
		res := stepResult{name, "success", time.Since(start)}
		if err != nil {
			res.outcome = "failure"
			r.failed = true
			if firstErr == nil {
				firstErr = fmt.Errorf("step %q failed: %w", name, err)
			}
		}
		results = append(results, res)
	}
	return results, firstErr
}

// knownActions are the actions whose work this test does itself: the
// repository is already copied and the Go toolchain running the tests is on
// PATH.
var knownActions = []string{"actions/checkout", "actions/setup-go"}

// step runs one step: a known action is taken as done, a run: script runs
// with the shell, directory and environment GitHub would give it.
func (r *runner) step(s step, envFile string) error {
	if s.Uses != "" {
		action, _, _ := strings.Cut(s.Uses, "@")
		if !slices.Contains(knownActions, action) {
			return fmt.Errorf("action %s is not known to this runner", s.Uses)
		}
		if file, ok := s.With["go-version-file"].(string); ok {
			return checkGoVersionFile(filepath.Join(r.dir, file))
		}
		return nil
	}
	j := r.wf.Jobs[r.jobID]
	script, err := r.expand(s.Run)
	if err != nil {
		return err
	}
	wd := firstNonEmpty(s.WorkingDirectory, j.Defaults.Run.WorkingDirectory, r.wf.Defaults.Run.WorkingDirectory)
	if wd, err = r.expand(wd); err != nil {
		return err
	}
	shell := firstNonEmpty(s.Shell, j.Defaults.Run.Shell, r.wf.Defaults.Run.Shell)
	// GitHub's shells: bash -e when none is named, bash with pipefail when
	// bash is named explicitly.
	argv := map[string][]string{
		"":     {"bash", "-e"},
		"bash": {"bash", "--noprofile", "--norc", "-eo", "pipefail"},
		"sh":   {"sh", "-e"},
	}[shell]
	if argv == nil {
		return fmt.Errorf("shell %q is not known to this runner", shell)
	}
	f, err := os.CreateTemp("", "step-*.sh")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script); err != nil {
		return err
	}
	f.Close()

	env, err := r.environment(s, envFile)
	if err != nil {
		return err
	}
	cmd := exec.Command(argv[0], append(argv[1:], f.Name())...)
	cmd.Dir = filepath.Join(r.dir, wd)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w; its last lines:\n%s", err, lastLines(out.String(), 40))
	}
	return nil
}

// runnerEnv says which variables of this process a runner's shell would
// have too: the system's, the Go toolchain's and proxies, not the ones a
// developer exported for this project (KAFKA_IMAGE, E2E_REQUIRED, ...).
var runnerEnv = regexp.MustCompile(`^(PATH|HOME|USER|LANG|LC_[A-Z]+|TMPDIR|TERM|(?i:[a-z]+_proxy)|GO[A-Z0-9]+|CC|CXX)$`)

// checkGoVersionFile fails when the file setup-go reads names no Go version
// or one newer than the toolchain running here, which then stands in for it.
func checkGoVersionFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("setup-go go-version-file: %w", err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(\.\d+)?)\s*$`).FindSubmatch(b)
	if m == nil {
		return fmt.Errorf("setup-go go-version-file %s names no go version", path)
	}
	want, have := string(m[1]), strings.TrimPrefix(runtime.Version(), "go")
	if versionNumbers(want) > versionNumbers(have) {
		return fmt.Errorf("setup-go would install go%s; this runner has go%s", want, have)
	}
	return nil
}

// versionNumbers orders Go versions such as 1.26 and 1.26.8.
func versionNumbers(v string) int {
	n := 0
	parts := strings.SplitN(v, ".", 3)
	for i := range 3 {
		d := 0
		if i < len(parts) {
			d, _ = strconv.Atoi(strings.TrimLeftFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' }))
		}
		n = n*1000 + d
	}
	return n
}

// environment is a runner's environment (CI=true, GITHUB_ACTIONS=true: a
// step that runs the tests does not start this runner again; no GOWORK or
// GOFLAGS of this process), then the workflow's and the job's env, what
// earlier steps wrote to GITHUB_ENV, and the step's env, in GitHub's order.
func (r *runner) environment(s step, envFile string) ([]string, error) {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); runnerEnv.MatchString(k) && k != "GOWORK" && k != "GOFLAGS" {
			env[k] = v
		}
	}
	env["CI"] = "true"
	env["GITHUB_ACTIONS"] = "true"
	env["GITHUB_WORKSPACE"] = r.dir
	env["GITHUB_ENV"] = envFile
	fromFile := map[string]string{}
	if b, err := os.ReadFile(envFile); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			k, v, ok := strings.Cut(line, "=")
			switch {
			case line == "":
			case !ok:
				return nil, fmt.Errorf("GITHUB_ENV line %q: only NAME=value is followed by this runner", line)
			case strings.HasPrefix(k, "GITHUB_") || strings.HasPrefix(k, "RUNNER_"):
				return nil, fmt.Errorf("GITHUB_ENV sets %s, which GitHub does not allow", k)
			default:
				fromFile[k] = v
			}
		}
	}
	for _, layer := range []map[string]string{r.wf.Env, r.wf.Jobs[r.jobID].Env, fromFile, s.Env} {
		for k, v := range layer {
			v, err := r.expand(v)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", k, err)
			}
			env[k] = v
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out, nil
}

// expression matches ${{ ... }} in a workflow string.
var expression = regexp.MustCompile(`\$\{\{(.*?)\}\}`)

// expand replaces each ${{ expression }} in s by its value.
func (r *runner) expand(s string) (string, error) {
	var err error
	out := expression.ReplaceAllStringFunc(s, func(m string) string {
		v, e := r.eval(expression.FindStringSubmatch(m)[1])
		if e != nil && err == nil {
			err = e
		}
		return fmt.Sprint(v)
	})
	return out, err
}

// statusFunction matches the functions that say which job status a step runs on.
var statusFunction = regexp.MustCompile(`\b(success|failure|always|cancelled)\(`)

// condition evaluates a step's if:, written with or without ${{ }}. As on
// GitHub, a condition that names no status function means
// success() && (condition), and an empty one success().
func (r *runner) condition(cond string) (bool, error) {
	cond = strings.TrimSpace(cond)
	if m := expression.FindStringSubmatch(cond); m != nil && m[0] == cond {
		cond = m[1]
	}
	switch {
	case strings.TrimSpace(cond) == "":
		cond = "success()"
	case !statusFunction.MatchString(cond):
		cond = "success() && (" + cond + ")"
	}
	v, err := r.eval(cond)
	return truthy(v), err
}

// eval evaluates an expression of the subset of GitHub's syntax that the
// workflow uses: matrix values, string literals, ==, !=, !, &&, ||,
// parentheses and the status functions. Anything else is an error.
func (r *runner) eval(src string) (any, error) {
	p := &exprParser{r: r}
	end := 0
	for _, loc := range exprTokens.FindAllStringIndex(src, -1) {
		if strings.TrimSpace(src[end:loc[0]]) != "" {
			return nil, fmt.Errorf("expression %q: %q is not understood by this runner", src, strings.TrimSpace(src[end:loc[0]]))
		}
		p.toks = append(p.toks, src[loc[0]:loc[1]])
		end = loc[1]
	}
	if strings.TrimSpace(src[end:]) != "" {
		return nil, fmt.Errorf("expression %q: %q is not understood by this runner", src, strings.TrimSpace(src[end:]))
	}
	v, err := p.or()
	if err == nil && p.pos < len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", src, err)
	}
	return v, nil
}

var exprTokens = regexp.MustCompile(`'(?:[^']|'')*'|==|!=|&&|\|\||[!()]|[A-Za-z_][A-Za-z0-9_.-]*`)

type exprParser struct {
	toks []string
	pos  int
	r    *runner
}

func (p *exprParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *exprParser) next() string { t := p.peek(); p.pos++; return t }

func (p *exprParser) or() (any, error) {
	v, err := p.and()
	for err == nil && p.peek() == "||" {
		p.next()
		var w any
		if w, err = p.and(); truthy(v) {
			continue
		}
		v = w
	}
	return v, err
}

func (p *exprParser) and() (any, error) {
	v, err := p.compare()
	for err == nil && p.peek() == "&&" {
		p.next()
		var w any
		if w, err = p.compare(); !truthy(v) {
			continue
		}
		v = w
	}
	return v, err
}

// compare is a == or != between two operands; ! binds tighter, as on GitHub.
func (p *exprParser) compare() (any, error) {
	v, err := p.not()
	if err != nil || (p.peek() != "==" && p.peek() != "!=") {
		return v, err
	}
	op := p.next()
	w, err := p.not()
	if err != nil {
		return nil, err
	}
	a, aok := v.(string)
	b, bok := w.(string)
	if !aok || !bok {
		if fmt.Sprintf("%T", v) != fmt.Sprintf("%T", w) {
			return nil, fmt.Errorf("%v %s %v: comparing a %T with a %T is not followed by this runner", v, op, w, v, w)
		}
		return (v == w) == (op == "=="), nil
	}
	// GitHub compares strings ignoring case.
	return strings.EqualFold(a, b) == (op == "=="), nil
}

func (p *exprParser) not() (any, error) {
	if p.peek() == "!" {
		p.next()
		v, err := p.not()
		return !truthy(v), err
	}
	return p.primary()
}

func (p *exprParser) primary() (any, error) {
	tok := p.next()
	switch {
	case tok == "(":
		v, err := p.or()
		if err == nil && p.next() != ")" {
			err = errors.New("missing )")
		}
		return v, err
	case strings.HasPrefix(tok, "'"):
		return strings.ReplaceAll(tok[1:len(tok)-1], "''", "'"), nil
	case tok == "true" || tok == "false":
		return tok == "true", nil
	case p.peek() == "(":
		p.next()
		if p.next() != ")" {
			return nil, fmt.Errorf("%s: arguments are not followed by this runner", tok)
		}
		switch tok {
		case "success":
			return !p.r.failed, nil
		case "failure":
			return p.r.failed, nil
		case "always":
			return true, nil
		case "cancelled":
			return false, nil
		}
		return nil, fmt.Errorf("function %s() is not known to this runner", tok)
	case strings.HasPrefix(tok, "matrix."):
		v, ok := p.r.matrix[strings.TrimPrefix(tok, "matrix.")]
		if !ok {
			return nil, fmt.Errorf("%s is not in the matrix", tok)
		}
		return v, nil
	}
	return nil, fmt.Errorf("%q is not known to this runner", tok)
}

// truthy is GitHub's coercion of a value to a boolean.
func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v != ""
	}
	return v != nil
}

// cleanCopy copies the files git tracks, and the untracked ones it does not
// ignore, as they are in the working tree, into a new git repository with
// one commit: what a runner's checkout of this tree, committed, would hold,
// without build outputs or anything else ignored. Tools that look for the
// repository (actionlint, the go command's VCS stamp) find it as on GitHub.
func cleanCopy(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", repoRoot, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("list the repository's files with git (this test needs a git checkout): %v", err)
	}
	if untracked, err := exec.Command("git", "-C", repoRoot, "ls-files", "--others", "--exclude-standard").Output(); err == nil && len(untracked) > 0 {
		t.Logf("copied files git does not track yet (add them, or GitHub will not have them):\n%s", untracked)
	}
	dst := filepath.Join(t.TempDir(), "repo")
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(repoRoot, rel)
		info, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(link, target)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(target, b, info.Mode().Perm())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "--quiet"},
		{"add", "--all"},
		{"-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "--quiet", "--no-verify", "--message", "checkout"},
	} {
		if out, err := exec.Command("git", append([]string{"-C", dst}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %s in the copy: %v\n%s", args[0], err, out)
		}
	}
	return dst
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
