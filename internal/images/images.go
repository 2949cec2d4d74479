// Package images builds the project's container images from Debian
// packages, Maven artifacts and Go modules alone, for machines and networks
// that reach no container registry. Each image carries a hash of its inputs
// as a label; a build whose image is current is skipped.
package images

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/event-driven-go/kafka-go/internal/stack"
)

const (
	// inputsLabel holds the hash of everything an image was built from.
	inputsLabel = "io.github.event-driven-go.inputs"
	// imagesBuildDir holds build contexts, root filesystems and Maven output.
	imagesBuildDir = "build/images"
	// debianSuite is the release of every base image, the one the official
	// golang and debian-slim defaults of the service Dockerfiles use too.
	debianSuite = "bookworm"
	// kafkaImageDir holds the Dockerfile, scripts, configs and pom of the Kafka image.
	kafkaImageDir = "images/kafka"
	// prometheusImageDir holds the Dockerfile of the Prometheus image.
	prometheusImageDir = "images/prometheus"
)

// Builder builds the images of the repository Repo, echoing each command
// and all progress to Log (os.Stderr when nil): callers keep stdout for the
// tags.
type Builder struct {
	Repo stack.Repo
	Log  io.Writer
}

func (b Builder) log() io.Writer {
	if b.Log == nil {
		return os.Stderr
	}
	return b.Log
}

// path is a path of the repository.
func (b Builder) path(elem ...string) string {
	return filepath.Join(append([]string{b.Repo.Dir}, elem...)...)
}

// run runs a command a person could type in dir (the repository when empty)
// with extra environment env, echoing it and its output to the log.
func (b Builder) run(dir string, env []string, name string, args ...string) error {
	fmt.Fprintf(b.log(), "%s %s\n", filepath.Base(name), strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = b.Repo.Dir
	}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = b.log(), b.log()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), subcommand(args), err)
	}
	return nil
}

// docker runs a docker command.
func (b Builder) docker(args ...string) error { return b.run("", nil, "docker", args...) }

// pruneDangling removes untagged, unused images that carry the inputs label:
// those a newer build of the same tag replaced, and the build stages of
// multi-stage builds (they inherit the label from the base). Tagged images stay.
func (b Builder) pruneDangling() error {
	return b.docker("image", "prune", "--force", "--filter", "label="+inputsLabel)
}

// imageLabel returns the value of label key on the local image ref; ok is
// false when there is no such image or it lacks the label.
func imageLabel(ref, key string) (value string, ok bool) {
	out, err := exec.Command("docker", "image", "inspect", "--format",
		fmt.Sprintf("{{index .Config.Labels %q}}", key), ref).Output()
	if err != nil {
		return "", false
	}
	value = strings.TrimSpace(string(out))
	return value, value != "" && value != "<no value>"
}

// imageID returns the content-addressed id of the local image ref.
func imageID(ref string) (string, error) {
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).Output()
	if err != nil {
		return "", fmt.Errorf("docker image inspect %s: %w", ref, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// subcommand is the first argument that is not a flag, to name a failed
// command in one line.
func subcommand(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

// Kafka builds the Kafka image, a drop-in for apache/kafka, unless an image
// with the same inputs already carries its tag, and returns the tag
// (KAFKA_OFFLINE_IMAGE, by default kafka-offline:<KAFKA_VERSION>).
func (b Builder) Kafka() (string, error) {
	version, err := b.Repo.Setting("KAFKA_VERSION", "")
	if err != nil {
		return "", err
	}
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(version) {
		return "", fmt.Errorf("KAFKA_VERSION %q: want a release such as 4.4.0 (set it in .env or the environment)", version)
	}
	tag, err := b.Repo.Setting("KAFKA_OFFLINE_IMAGE", "kafka-offline:"+version)
	if err != nil {
		return "", err
	}
	base := debianBase{
		tag:      "kafka-offline-base:" + debianSuite + "-jre17",
		variant:  "apt",
		packages: []string{"openjdk-17-jre-headless", "ca-certificates"},
	}
	want, err := b.inputsOn(base, kafkaImageDir, "kafka", version)
	if err != nil || b.upToDate(tag, want) {
		return tag, err
	}

	context := b.path(imagesBuildDir, "kafka")
	if err := b.kafkaLibs(filepath.Join(context, "libs"), version); err != nil {
		return "", err
	}
	if err := stage(b.path(kafkaImageDir), context, nil, "libs", "libs.inputs"); err != nil {
		return "", err
	}
	err = b.docker("build", "--force-rm", "--tag", tag, "--label", inputsLabel+"="+want,
		"--build-arg", "BASE_IMAGE="+base.tag,
		"--build-arg", "KAFKA_VERSION="+version,
		context)
	if err != nil {
		return "", err
	}
	return tag, b.pruneDangling()
}

// kafkaLibs fills dir with the jars of Kafka version, as resolved by Maven
// from the image's pom, unless the last resolution had the same inputs.
func (b Builder) kafkaLibs(dir, version string) error {
	pom := b.path(kafkaImageDir, "pom.xml")
	h := newInputs()
	h.add("kafka", version)
	if err := h.addFile(pom); err != nil {
		return err
	}
	want := h.sum()
	stamp := dir + ".inputs"
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want && fileExists(dir) {
		fmt.Fprintf(b.log(), "%s is up to date\n", dir)
		return nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return errors.New("mvn not found: Maven resolves Kafka's jars; install it (Debian/Ubuntu: apt-get install maven)")
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	err = b.run("", nil, "mvn", "dependency:copy-dependencies",
		"--batch-mode", "--quiet", "--file", pom,
		"-Dkafka.version="+version, "-DoutputDirectory="+abs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(stamp, []byte(want), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", stamp, err)
	}
	return nil
}

// Apps builds the service images that are not current on local Debian
// bases and returns the tags of all of them, producer, consumer, topics
// (PRODUCER_OFFLINE_IMAGE, CONSUMER_OFFLINE_IMAGE and TOPICS_OFFLINE_IMAGE,
// by default producer-offline:latest, consumer-offline:latest and
// topics-offline:latest). The topics image is the compose app profile's
// one-shot service that creates the topics, built from the internal module.
func (b Builder) Apps() ([]string, error) {
	builder, err := goBuilderBase()
	if err != nil {
		return nil, err
	}
	runtime := debianBase{tag: "debian-offline:" + debianSuite + "-slim", variant: "minbase"}
	var baseIDs []string
	for _, base := range []debianBase{builder, runtime} {
		if err := b.ensure(base); err != nil {
			return nil, err
		}
		id, err := imageID(base.tag)
		if err != nil {
			return nil, err
		}
		baseIDs = append(baseIDs, id)
	}

	var tags []string
	for _, app := range []struct{ name, module string }{{"producer", "producer"}, {"consumer", "consumer"}, {"topics", "internal"}} {
		module := app.module
		tag, err := b.Repo.Setting(strings.ToUpper(app.name)+"_OFFLINE_IMAGE", app.name+"-offline:latest")
		if err != nil {
			return nil, err
		}
		h := newInputs()
		h.add("bases", strings.Join(baseIDs, " "))
		if err := h.addTree(b.path(module), skipVendor); err != nil {
			return nil, err
		}
		want := h.sum()
		if b.upToDate(tag, want) {
			tags = append(tags, tag)
			continue
		}

		context := b.path(imagesBuildDir, module)
		if err := stage(b.path(module), context, skipVendor); err != nil {
			return nil, err
		}
		// Vendoring here, where the go command already reaches the module
		// proxy, keeps the build container off the network: containers do not
		// always trust what the host trusts.
		if err := b.run(context, []string{"GOWORK=off"}, stack.GoCommand(), "mod", "vendor"); err != nil {
			return nil, fmt.Errorf("vendor modules of %s: %w", module, err)
		}
		args := []string{"build", "--force-rm", "--tag", tag, "--label", inputsLabel + "=" + want,
			"--build-arg", "GO_IMAGE=" + builder.tag,
			"--build-arg", "RUNTIME_IMAGE=" + runtime.tag}
		if fileExists(filepath.Join(context, "vendor", "modules.txt")) {
			args = append(args, "--build-arg", "GOFLAGS=-mod=vendor")
		}
		if err := b.docker(append(args, context)...); err != nil {
			return nil, err
		}
		if err := b.pruneDangling(); err != nil {
			return nil, err
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

// Prometheus builds the Prometheus image, a stand-in for prom/prometheus
// from Debian's package, unless an image with the same inputs already
// carries its tag, and returns the tag (PROMETHEUS_OFFLINE_IMAGE, by
// default prometheus-offline:latest).
func (b Builder) Prometheus() (string, error) {
	tag, err := b.Repo.Setting("PROMETHEUS_OFFLINE_IMAGE", "prometheus-offline:latest")
	if err != nil {
		return "", err
	}
	base := debianBase{tag: "prometheus-offline-base:" + debianSuite, variant: "apt", packages: []string{"prometheus"}}
	want, err := b.inputsOn(base, prometheusImageDir, "prometheus", "debian")
	if err != nil || b.upToDate(tag, want) {
		return tag, err
	}
	err = b.docker("build", "--force-rm", "--tag", tag, "--label", inputsLabel+"="+want,
		"--build-arg", "BASE_IMAGE="+base.tag, b.path(prometheusImageDir))
	if err != nil {
		return "", err
	}
	return tag, b.pruneDangling()
}

// inputsOn builds the base image unless current and returns the hash of
// what an image on it is built from: the base, the folder dir and the
// named value.
func (b Builder) inputsOn(base debianBase, dir, name, value string) (string, error) {
	if err := b.ensure(base); err != nil {
		return "", err
	}
	baseID, err := imageID(base.tag)
	if err != nil {
		return "", err
	}
	h := newInputs()
	h.add(name, value)
	h.add("base", baseID)
	if err := h.addTree(b.path(dir), nil); err != nil {
		return "", err
	}
	return h.sum(), nil
}

// goBuilderBase stands in for golang:<version>-bookworm: Debian with a C
// toolchain for cgo, git, and the Go toolchain that runs Mage.
func goBuilderBase() (debianBase, error) {
	out, err := exec.Command(stack.GoCommand(), "env", "GOROOT", "GOVERSION").Output()
	if err != nil {
		return debianBase{}, fmt.Errorf("go env GOROOT GOVERSION: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return debianBase{}, fmt.Errorf("go env GOROOT GOVERSION: unexpected output %q", out)
	}
	goroot, version := lines[0], strings.Fields(lines[1])[0]
	return debianBase{
		tag:      "golang-offline:" + strings.TrimPrefix(version, "go") + "-" + debianSuite,
		variant:  "apt",
		packages: []string{"gcc", "libc6-dev", "ca-certificates", "git"},
		goroot:   goroot,
		version:  version,
		env: []string{
			"GOPATH=/go",
			"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			// The copied toolchain is the one to use; never download another.
			"GOTOOLCHAIN=local",
		},
	}, nil
}

// debianBase is a Debian root filesystem made by mmdebstrap and imported into
// Docker, standing in for a base image a registry would serve.
type debianBase struct {
	tag      string
	variant  string   // mmdebstrap --variant
	packages []string // mmdebstrap --include
	goroot   string   // a Go toolchain copied to /usr/local/go, if set
	version  string   // the version of that toolchain
	env      []string // ENV of the image
}

// slimDpkgOptions keep documentation and translations out of the root
// filesystems, as Debian's slim images do. Man pages stay: the Java package
// registers alternatives for them.
var slimDpkgOptions = []string{
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
	"path-exclude=/usr/share/info/*",
	"path-exclude=/usr/share/locale/*",
}

// ensure builds the base image d unless one with the same inputs carries its tag.
func (b Builder) ensure(d debianBase) error {
	want := d.inputs()
	if b.upToDate(d.tag, want) {
		return nil
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("mmdebstrap not found: it builds the Debian base image %s; install it (Debian/Ubuntu: apt-get install mmdebstrap)", d.tag)
	}
	if err := os.MkdirAll(b.path(imagesBuildDir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", imagesBuildDir, err)
	}
	rootfs := filepath.Join(b.path(imagesBuildDir), strings.NewReplacer(":", "_", "/", "_").Replace(d.tag)+".tar")
	if err := os.Remove(rootfs); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", rootfs, err)
	}
	// The tarball is only a step between mmdebstrap and docker import.
	defer os.Remove(rootfs)

	args := []string{"--variant=" + d.variant}
	if len(d.packages) > 0 {
		args = append(args, "--include="+strings.Join(d.packages, ","))
	}
	for _, opt := range slimDpkgOptions {
		args = append(args, "--dpkgopt="+opt)
	}
	if d.goroot != "" {
		args = append(args, `--customize-hook=mkdir -p "$1/usr/local/go" && cp -a `+shellQuote(d.goroot+"/.")+` "$1/usr/local/go/"`)
	}
	args = append(args, debianSuite, rootfs)
	// Networks that mirror Debian name their mirror here; unset, mmdebstrap
	// uses its default.
	if mirror := os.Getenv("DEBIAN_MIRROR"); mirror != "" {
		args = append(args, mirror)
	}
	if err := b.run("", nil, "mmdebstrap", args...); err != nil {
		return err
	}

	imp := []string{"import"}
	for _, env := range d.env {
		imp = append(imp, "--change", "ENV "+env)
	}
	imp = append(imp, "--change", "LABEL "+inputsLabel+"="+want, rootfs, d.tag)
	return b.docker(imp...)
}

// inputs hashes what decides the content of the base image.
func (b debianBase) inputs() string {
	h := newInputs()
	h.add("suite", debianSuite)
	h.add("variant", b.variant)
	h.add("packages", strings.Join(b.packages, ","))
	h.add("dpkg", strings.Join(slimDpkgOptions, " "))
	h.add("go", b.version)
	h.add("env", strings.Join(b.env, " "))
	return h.sum()
}

// upToDate reports whether the image tag was built from inputs want.
func (b Builder) upToDate(tag, want string) bool {
	got, ok := imageLabel(tag, inputsLabel)
	if ok && got == want {
		fmt.Fprintf(b.log(), "%s is up to date\n", tag)
		return true
	}
	return false
}

// skipVendor leaves out a module's vendor directory, which the image build
// makes afresh, and VCS data.
func skipVendor(rel string, d fs.DirEntry) bool {
	return d.IsDir() && (rel == "vendor" || d.Name() == ".git")
}

// stage makes dst a copy of src (less what skip names), keeping the entries
// of dst named in keep: the reusable parts of a build context.
func stage(src, dst string, skip func(string, fs.DirEntry) bool, keep ...string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return fmt.Errorf("read %s: %w", dst, err)
	}
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
				return fmt.Errorf("clear %s: %w", dst, err)
			}
		}
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if skip != nil && skip(rel, d) {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			return copyFile(path, target, info.Mode().Perm())
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// inputs accumulates a hash of named values and files.
type inputs struct{ buf bytes.Buffer }

func newInputs() *inputs { return &inputs{} }

func (h *inputs) add(name, value string) {
	fmt.Fprintf(&h.buf, "%s=%q\n", name, value)
}

// addFile hashes a file's content and whether it is executable: the only
// mode bit that survives a git checkout unchanged.
func (h *inputs) addFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("hash %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("hash %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	h.add(filepath.ToSlash(path), fmt.Sprintf("%x x=%t", sum, info.Mode()&0o111 != 0))
	return nil
}

// addTree hashes every file under dir, in lexical order, less what skip names.
func (h *inputs) addTree(dir string, skip func(string, fs.DirEntry) bool) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("hash %s: %w", dir, err)
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel != "." && skip != nil && skip(rel, d) {
			return filepath.SkipDir
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			h.add(filepath.ToSlash(path), "-> "+link)
		case d.Type().IsRegular():
			return h.addFile(path)
		}
		return nil
	})
}

func (h *inputs) sum() string {
	sum := sha256.Sum256(h.buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// shellQuote quotes s for a POSIX shell, as mmdebstrap runs hooks through sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
