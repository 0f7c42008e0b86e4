// Package deploy holds the deployment recipes (Docker Compose, systemd,
// Kubernetes, reverse proxies). Its tests check that every recipe says what
// the bridge understands: the variables exist, secrets go through NAME_FILE
// to files the recipe really provides, the probes ask /healthz and /readyz,
// and base images are pinned. Where a tool that knows the format is
// installed (systemd-analyze, kubectl, caddy, nginx, docker compose,
// goreleaser) the recipe is also handed to it; without the tool that part
// is skipped with a message.
package deploy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// root is the repository, seen from this package's directory.
const root = ".."

// vars are the names the bridge reads: env tags in the code and the
// README's configuration table. secret names may also come as NAME_FILE.
type vars struct {
	known, secret map[string]bool
}

var envTag = regexp.MustCompile(`env:"([A-Z][A-Z0-9_]*)"`)

func loadVars(t *testing.T) vars {
	t.Helper()
	v := vars{known: map[string]bool{}, secret: map[string]bool{}}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || path == filepath.Join(root, "deploy")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range envTag.FindAllSubmatch(b, -1) {
			v.known[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readme := readFile(t, filepath.Join(root, "README.md"))
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|").FindAllStringSubmatch(readme, -1) {
		v.known[m[1]] = true
	}
	// The secrets: the names in bridge's secretNames and its *Secrets lists.
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(root, "bridge", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			var node ast.Node
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Name.Name == "secretNames" {
					node = d
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if vs, ok := s.(*ast.ValueSpec); ok && strings.HasSuffix(vs.Names[0].Name, "Secrets") {
						node = vs
					}
				}
			}
			if node == nil {
				continue
			}
			ast.Inspect(node, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && envTag.MatchString(`env:"`+s+`"`) {
						v.secret[s] = true
					}
				}
				return true
			})
		}
	}
	for _, must := range []string{"HTTP_ADDR", "ROBIN_API_KEY", "ANONYMOUS_NUMBER", "SIP_SERVER"} {
		if !v.known[must] {
			t.Fatalf("found no variable %s in the code or the README: the test no longer reads them right", must)
		}
	}
	for _, must := range []string{"ROBIN_API_KEY", "WEBHOOK_TOKEN", "SIP_PASSWORD"} {
		if !v.secret[must] {
			t.Fatalf("found no secret %s in bridge's secretNames: the test no longer reads them right", must)
		}
	}
	return v
}

// check reports every variable of a recipe the bridge does not know, and
// every secret given as a value instead of NAME_FILE. It returns the
// secrets' file variables.
func (v vars) check(t *testing.T, recipe string, env map[string]string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for name, val := range env {
		base, isFile := strings.CutSuffix(name, "_FILE")
		switch {
		case v.secret[name]:
			t.Errorf("%s: the secret %s is given as a value; pass %s_FILE, the path of a file holding it", recipe, name, name)
		case isFile && v.secret[base]:
			files[name] = val
		case !v.known[name]:
			t.Errorf("%s: %s is not a variable of the bridge (see the README's configuration table)", recipe, name)
		}
	}
	for _, must := range []string{"ROBIN_API_KEY_FILE", "WEBHOOK_TOKEN_FILE"} {
		if _, ok := files[must]; !ok {
			t.Errorf("%s: no %s: the bridge does not start without it", recipe, must)
		}
	}
	return files
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeFile writes a file for a tool to read, making its directory.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func loadYAML(t *testing.T, path string) []any {
	t.Helper()
	docs, err := parseYAML(readFile(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return docs
}

// get walks a parsed document: keys of mappings, indexes of sequences.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

func str(v any, path ...any) string { s, _ := get(v, path...).(string); return s }

func list(v any, path ...any) []string {
	var out []string
	for _, e := range asSlice(get(v, path...)) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// envFile reads KEY=value lines (Docker env files, systemd EnvironmentFile).
func envFile(t *testing.T, path string, into map[string]string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, val, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=value", path, l)
			continue
		}
		into[k] = val
	}
}

// checkImage: an image reference names no registry host and, for a base
// image, a pinned version.
func checkImage(t *testing.T, where, ref string, pinned bool) {
	t.Helper()
	name, tag, _ := strings.Cut(strings.TrimPrefix(ref, "${VOIPBRIDGE_IMAGE:-"), ":")
	if first, _, ok := strings.Cut(name, "/"); ok && strings.ContainsAny(first, ".:") || first == "localhost" {
		t.Errorf("%s: image %s names a registry host", where, ref)
	}
	if pinned && (tag == "" || tag == "latest" || !strings.ContainsAny(tag, "0123456789")) {
		t.Errorf("%s: image %s is not pinned to a version", where, ref)
	}
}

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Logf("%s is not installed here: that check is skipped", name)
		return ""
	}
	return p
}

func run(t *testing.T, dir string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestDeployCompose: both Compose files run the bridge with known
// variables, secrets as files Compose provides, the image's health check,
// and (with NATS) a cluster the bridge's NATS_URL and NATS_REPLICAS fit.
func TestDeployCompose(t *testing.T) {
	v := loadVars(t)
	for _, name := range []string{"compose.yaml", "compose.nats.yaml"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("compose", name)
			doc := loadYAML(t, path)[0]
			services, _ := get(doc, "services").(map[string]any)
			var bridge map[string]any
			var natsServers []string
			for svc, s := range services {
				image := str(s, "image")
				switch {
				case strings.Contains(image, "voipbridge/voipbridge"):
					bridge = s.(map[string]any)
					checkImage(t, path, image, false)
				case strings.HasPrefix(image, "nats:"):
					natsServers = append(natsServers, svc)
					checkImage(t, path, image, true)
					if cmd := list(s, "command"); !slices.Contains(cmd, "--config") || !slices.Contains(cmd, svc) {
						t.Errorf("%s: %s runs %v: want --config and --name %s", path, svc, cmd, svc)
					}
				default:
					t.Errorf("%s: service %s runs %q, which this test does not know", path, svc, image)
				}
			}
			if bridge == nil {
				t.Fatalf("%s: no voipbridge service", path)
			}
			env := map[string]string{}
			for _, f := range list(bridge, "env_file") {
				envFile(t, filepath.Join("compose", f), env)
			}
			for k, val := range get(bridge, "environment").(map[string]any) {
				env[k], _ = val.(string)
			}
			svcSecrets := list(bridge, "secrets")
			for name, p := range v.check(t, path, env) {
				secret, ok := strings.CutPrefix(p, "/run/secrets/")
				if !ok || !slices.Contains(svcSecrets, secret) || str(doc, "secrets", secret, "file") == "" {
					t.Errorf("%s: %s=%s is not a secret file Compose gives the service (/run/secrets/<one of its secrets>)", path, name, p)
				}
			}
			if test := list(bridge, "healthcheck", "test"); !slices.Contains(test, "healthcheck") {
				t.Errorf("%s: health check %v does not run voipbridge healthcheck", path, test)
			}
			if env["NATS_URL"] == "" {
				if vols := list(bridge, "volumes"); !slices.Contains(vols, "data:/data") {
					t.Errorf("%s: the embedded journal is not on a volume at /data: %v", path, vols)
				}
				return
			}
			slices.Sort(natsServers)
			var hosts []string
			for _, u := range strings.Split(env["NATS_URL"], ",") {
				p, err := url.Parse(u)
				if err != nil || p.Scheme != "nats" {
					t.Errorf("%s: NATS_URL entry %q", path, u)
					continue
				}
				hosts = append(hosts, p.Hostname())
			}
			slices.Sort(hosts)
			if !slices.Equal(hosts, natsServers) {
				t.Errorf("%s: NATS_URL names %v, the NATS services are %v", path, hosts, natsServers)
			}
			if n, err := strconv.Atoi(env["NATS_REPLICAS"]); err != nil || n != len(natsServers) || n < 3 {
				t.Errorf("%s: NATS_REPLICAS %q with %d servers: want a replica on each of at least three", path, env["NATS_REPLICAS"], len(natsServers))
			}
			conf := readFile(t, filepath.Join("compose", "nats.conf"))
			for _, want := range append([]string{"jetstream", "store_dir: /data", "cluster"}, natsServers...) {
				if !strings.Contains(conf, want) {
					t.Errorf("compose/nats.conf lacks %q", want)
				}
			}
		})
	}
	if docker := tool(t, "docker"); docker != "" {
		if out, err := run(t, ".", docker, "compose", "version"); err != nil {
			t.Logf("docker compose is not installed here (%s): docker compose config is skipped", strings.TrimSpace(out))
			return
		}
		dir := t.TempDir()
		for _, f := range []string{"compose.yaml", "compose.nats.yaml", "voipbridge.env", "nats.conf"} {
			writeFile(t, filepath.Join(dir, f), readFile(t, filepath.Join("compose", f)))
		}
		for _, s := range []string{"robin_api_key", "webhook_token", "admin_token"} {
			writeFile(t, filepath.Join(dir, "secrets", s), "x")
		}
		for _, f := range []string{"compose.yaml", "compose.nats.yaml"} {
			if out, err := run(t, dir, docker, "compose", "-f", f, "config", "--quiet"); err != nil {
				t.Errorf("docker compose config %s: %v\n%s", f, err, out)
			}
		}
	}
}

// TestDeployKubernetes: in both layouts one replica runs, the probes ask
// /healthz and /readyz on the named port HTTP_ADDR listens on, every
// variable is the bridge's, and every NAME_FILE and EXTENSIONS_FILE is in a
// volume of the Secret or ConfigMap that holds it.
func TestDeployKubernetes(t *testing.T) {
	v := loadVars(t)
	var load func(dir string) []any
	load = func(dir string) []any {
		var docs []any
		k := loadYAML(t, filepath.Join("kubernetes", dir, "kustomization.yaml"))[0]
		for _, r := range list(k, "resources") {
			p := filepath.Join("kubernetes", dir, r)
			if st, err := os.Stat(p); err != nil {
				t.Fatalf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
			} else if st.IsDir() {
				docs = append(docs, load(filepath.Join(dir, r))...)
			} else {
				docs = append(docs, loadYAML(t, p)...)
			}
		}
		return docs
	}
	kubectl := tool(t, "kubectl")
	for _, layout := range []string{"embedded", "external-nats"} {
		t.Run(layout, func(t *testing.T) {
			docs := load(layout)
			configMaps := map[string]any{}
			var workload, service any
			for _, d := range docs {
				switch str(d, "kind") {
				case "ConfigMap":
					configMaps[str(d, "metadata", "name")] = get(d, "data")
				case "StatefulSet", "Deployment":
					workload = d
				case "Service":
					service = d
				}
			}
			if workload == nil || service == nil {
				t.Fatalf("%s: want a StatefulSet or Deployment and a Service", layout)
			}
			kind := str(workload, "kind")
			replicas, _ := strconv.Atoi(str(workload, "spec", "replicas"))
			pod := get(workload, "spec", "template")
			labels, _ := get(pod, "metadata", "labels").(map[string]any)
			for k, val := range get(service, "spec", "selector").(map[string]any) {
				if labels[k] != val {
					t.Errorf("%s: the Service selects %s=%v, the pods carry %v", layout, k, val, labels)
				}
			}
			c := get(pod, "spec", "containers", 0)
			checkImage(t, layout, str(c, "image"), false)
			env := map[string]string{}
			for _, from := range asSlice(get(c, "envFrom")) {
				data, ok := configMaps[str(from, "configMapRef", "name")].(map[string]any)
				if !ok {
					t.Fatalf("%s: envFrom names ConfigMap %q, which is not in the layout", layout, str(from, "configMapRef", "name"))
				}
				for k, val := range data {
					env[k], _ = val.(string)
				}
			}
			for _, e := range asSlice(get(c, "env")) {
				env[str(e, "name")] = str(e, "value")
			}
			files := v.check(t, layout, env)

			port := map[string]string{} // name: container port
			for _, p := range asSlice(get(c, "ports")) {
				port[str(p, "name")] = str(p, "containerPort")
			}
			if _, p, _ := net.SplitHostPort(cmpOr(env["HTTP_ADDR"], ":8080")); p != port["http"] {
				t.Errorf("%s: HTTP_ADDR listens on %s, the container port named http is %q", layout, p, port["http"])
			}
			if a := env["ADMIN_ADDR"]; a != "" {
				if _, p, _ := net.SplitHostPort(a); p != port["admin"] {
					t.Errorf("%s: ADMIN_ADDR listens on %s, the container port named admin is %q", layout, p, port["admin"])
				}
			}
			for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if got := str(c, probe, "httpGet", "path"); got != want || str(c, probe, "httpGet", "port") != "http" {
					t.Errorf("%s: %s asks %q on port %q, want %s on http", layout, probe, got, str(c, probe, "httpGet", "port"), want)
				}
			}

			mounts := map[string]string{} // mount path: volume
			for _, m := range asSlice(get(c, "volumeMounts")) {
				mounts[str(m, "mountPath")] = str(m, "name")
			}
			volumes := map[string]any{}
			for _, vol := range asSlice(get(pod, "spec", "volumes")) {
				volumes[str(vol, "name")] = vol
			}
			for name, p := range files {
				vol := volumes[mounts[filepath.Dir(p)]]
				if str(vol, "secret", "secretName") == "" {
					t.Errorf("%s: %s=%s is not in a volume of a Secret", layout, name, p)
				}
			}
			if p := env["EXTENSIONS_FILE"]; p != "" {
				vol := volumes[mounts[filepath.Dir(p)]]
				data, _ := configMaps[str(vol, "configMap", "name")].(map[string]any)
				if _, ok := data[filepath.Base(p)]; !ok {
					t.Errorf("%s: EXTENSIONS_FILE=%s is in no ConfigMap volume holding %s", layout, p, filepath.Base(p))
				}
			}
			if env["NATS_URL"] == "" {
				// The embedded journal's directory is locked to one process.
				if replicas != 1 {
					t.Errorf("%s: %d replicas on an embedded journal: want 1", layout, replicas)
				}
				dataDir := cmpOr(env["DATA_DIR"], "/data")
				claim := mounts[dataDir]
				if kind != "StatefulSet" || str(workload, "spec", "volumeClaimTemplates", 0, "metadata", "name") != claim || claim == "" {
					t.Errorf("%s: the embedded journal (DATA_DIR %s) is not on a volume claim of a StatefulSet", layout, dataDir)
				}
			} else if n, _ := strconv.Atoi(env["NATS_REPLICAS"]); n < 3 || replicas < 1 {
				// Bridges on one external journal elect one active (LEASE_TTL).
				t.Errorf("%s: NATS_REPLICAS %q, %d bridges: a journal on an external cluster wants three replicas", layout, env["NATS_REPLICAS"], replicas)
			}
			if str(pod, "spec", "securityContext", "runAsNonRoot") != "true" || str(c, "securityContext", "readOnlyRootFilesystem") != "true" {
				t.Errorf("%s: want runAsNonRoot and a read-only root file system", layout)
			}
			if kubectl != "" {
				out, err := run(t, ".", kubectl, "kustomize", filepath.Join("kubernetes", layout))
				if err != nil || !strings.Contains(out, "kind: "+kind) {
					t.Errorf("kubectl kustomize kubernetes/%s: %v\n%s", layout, err, out)
				}
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestDeploySystemd: the unit is hardened, keeps its journal in its state
// directory, and hands the secrets over as credentials read via NAME_FILE;
// systemd-analyze, where installed, finds nothing to say and rates its
// exposure as low.
func TestDeploySystemd(t *testing.T) {
	v := loadVars(t)
	unitPath := filepath.Join("systemd", "voipbridge.service")
	unit := readFile(t, unitPath)
	settings := map[string][]string{}
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, val, _ := strings.Cut(l, "=")
		settings[k] = append(settings[k], val)
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "StateDirectory": "voipbridge", "ProtectSystem": "strict",
		"NoNewPrivileges": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s=%v, want %s=%s", unitPath, k, got, k, want)
		}
	}
	env := map[string]string{}
	envFile(t, filepath.Join("systemd", "voipbridge.env"), env)
	for _, e := range settings["Environment"] {
		k, val, _ := strings.Cut(e, "=")
		env[k] = val
	}
	if env["DATA_DIR"] != "%S/voipbridge" {
		t.Errorf("%s: DATA_DIR=%s: want the state directory, %%S/voipbridge", unitPath, env["DATA_DIR"])
	}
	creds := map[string]bool{}
	for _, c := range settings["LoadCredential"] {
		name, _, _ := strings.Cut(c, ":")
		creds[name] = true
	}
	for name, p := range v.check(t, unitPath, env) {
		if cred, ok := strings.CutPrefix(p, "%d/"); !ok || !creds[cred] {
			t.Errorf("%s: %s=%s is not a credential of the unit (%%d/<a LoadCredential name>)", unitPath, name, p)
		}
	}
	if len(settings["EnvironmentFile"]) != 1 {
		t.Errorf("%s: want one EnvironmentFile", unitPath)
	}

	analyze := tool(t, "systemd-analyze")
	if analyze == "" {
		return
	}
	// verify wants ExecStart to exist: use this test's own executable.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "voipbridge.service")
	writeFile(t, copyPath, strings.ReplaceAll(unit, "/usr/local/bin/voipbridge", self))
	out, err := run(t, dir, analyze, "verify", copyPath)
	if err != nil || strings.Contains(out, "voipbridge.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = run(t, dir, analyze, "security", "--offline=yes", "--threshold=20", copyPath)
	switch {
	case err != nil && strings.Contains(out, "unrecognized option"):
		t.Logf("this systemd-analyze has no offline security check: skipped")
	case err != nil:
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v)\n%s", err, out)
	}
}

// TestDeployDockerfile: the image pins its base, names no registry, keeps
// the Go caches between builds, runs as a user, has OCI labels and a health
// check through the binary, and can take GoReleaser's binaries.
func TestDeployDockerfile(t *testing.T) {
	v := loadVars(t)
	src := strings.ReplaceAll(readFile(t, filepath.Join(root, "Dockerfile")), "\\\n", " ")
	stages := map[string]bool{"scratch": true}
	var run, labels, healthcheck string
	user := ""
	for _, l := range strings.Split(src, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			args := slices.DeleteFunc(f[1:], func(s string) bool { return strings.HasPrefix(s, "--") })
			if !stages[args[0]] && !strings.Contains(args[0], "$") {
				checkImage(t, "Dockerfile", args[0], true)
			}
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				stages[args[2]] = true
			}
		case "RUN":
			if strings.Contains(l, "go build") {
				run = l
			}
		case "LABEL":
			labels += l
		case "HEALTHCHECK":
			healthcheck = l
		case "USER":
			user = f[1]
		case "ENV":
			for _, kv := range f[1:] {
				k, _, _ := strings.Cut(kv, "=")
				if !v.known[k] {
					t.Errorf("Dockerfile: ENV %s is not a variable of the bridge", k)
				}
			}
		}
	}
	for _, want := range []string{"--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-build", "CGO_ENABLED=0", "bridge.Version="} {
		if !strings.Contains(run, want) {
			t.Errorf("Dockerfile: the go build step lacks %s", want)
		}
	}
	for _, want := range []string{"org.opencontainers.image.source", "org.opencontainers.image.licenses", "org.opencontainers.image.version", "org.opencontainers.image.revision"} {
		if !strings.Contains(labels, want) {
			t.Errorf("Dockerfile: no label %s", want)
		}
	}
	if !strings.Contains(healthcheck, `"healthcheck"`) {
		t.Errorf("Dockerfile: HEALTHCHECK %q does not run voipbridge healthcheck", healthcheck)
	}
	if user == "" || user == "0" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0:") {
		t.Errorf("Dockerfile: runs as %q, want a non-root user", user)
	}
	if !stages["binary-release"] || !stages["binary-source"] {
		t.Errorf("Dockerfile: want the stages binary-source (go build) and binary-release (GoReleaser's binaries)")
	}
	ignore := strings.Fields(readFile(t, filepath.Join(root, ".dockerignore")))
	for _, want := range []string{".git", "**/data", "dist"} {
		if !slices.Contains(ignore, want) {
			t.Errorf(".dockerignore does not keep %s out of the build context", want)
		}
	}
}

// TestDeployRelease: GoReleaser builds static linux/amd64 and arm64
// binaries with the version in the variable the code reports, checksums and
// a two-platform image from the Dockerfile's release stage; the workflow
// runs it for v* tags; LICENSE and CHANGELOG are there.
func TestDeployRelease(t *testing.T) {
	cfg := loadYAML(t, filepath.Join(root, ".goreleaser.yaml"))[0]
	b := get(cfg, "builds", 0)
	if !slices.Contains(list(b, "env"), "CGO_ENABLED=0") {
		t.Error(".goreleaser.yaml: builds are not static (CGO_ENABLED=0)")
	}
	if goos, arch := list(b, "goos"), list(b, "goarch"); !slices.Equal(goos, []string{"linux"}) || !slices.Contains(arch, "amd64") || !slices.Contains(arch, "arm64") {
		t.Errorf(".goreleaser.yaml: builds for %v %v, want linux amd64 and arm64", goos, arch)
	}
	if str(b, "main") != "./cmd/voipbridge" {
		t.Errorf(".goreleaser.yaml: main %q", str(b, "main"))
	}
	// The -X target must be the variable the bridge reports.
	ldflags := strings.Join(list(b, "ldflags"), " ")
	m := regexp.MustCompile(`-X github\.com/voipbridge/voipbridge/(\w+)\.(\w+)=\{\{ \.Version \}\}`).FindStringSubmatch(ldflags)
	if m == nil {
		t.Fatalf(".goreleaser.yaml: ldflags %q set no version variable", ldflags)
	}
	if !regexp.MustCompile(`(?m)^var ` + m[2] + ` = "dev"`).MatchString(readPackage(t, m[1])) {
		t.Errorf(".goreleaser.yaml: ldflags set %s.%s, which package %s does not declare as a string variable", m[1], m[2], m[1])
	}
	if str(cfg, "checksum", "name_template") == "" {
		t.Error(".goreleaser.yaml: no checksums")
	}
	d := get(cfg, "dockers_v2", 0)
	if p := list(d, "platforms"); !slices.Contains(p, "linux/amd64") || !slices.Contains(p, "linux/arm64") {
		t.Errorf(".goreleaser.yaml: image platforms %v", p)
	}
	if str(d, "build_args", "BINARY") != "release" || cmpOr(str(d, "dockerfile"), "Dockerfile") != "Dockerfile" {
		t.Error(".goreleaser.yaml: the image must come from the Dockerfile's release stage (BINARY=release)")
	}
	for _, img := range list(d, "images") {
		if strings.Contains(img, ".") && !strings.Contains(img, "{{") {
			t.Errorf(".goreleaser.yaml: image %s names a registry host; take it from IMAGE", img)
		}
	}
	for _, f := range asSlice(get(cfg, "archives", 0, "files")) {
		matches, err := filepath.Glob(filepath.Join(root, strings.ReplaceAll(f.(string), "**/", "*/")))
		if err != nil || len(matches) == 0 {
			t.Errorf(".goreleaser.yaml: archive file %s matches nothing", f)
		}
	}

	wf := loadYAML(t, filepath.Join(root, ".github", "workflows", "release.yml"))[0]
	if tags := list(wf, "on", "push", "tags"); !slices.Contains(tags, "v*") {
		t.Errorf("release.yml: runs on tags %v, want v*", tags)
	}
	if str(wf, "permissions", "contents") != "write" {
		t.Error("release.yml: needs contents: write to publish the release")
	}
	var uses []string
	for _, job := range get(wf, "jobs").(map[string]any) {
		for _, step := range asSlice(get(job, "steps")) {
			uses = append(uses, str(step, "uses"))
			if strings.HasPrefix(str(step, "uses"), "goreleaser/goreleaser-action") && !strings.HasPrefix(str(step, "with", "args"), "release") {
				t.Errorf("release.yml: GoReleaser runs %q", str(step, "with", "args"))
			}
			if strings.Contains(str(step, "run"), ".ci/run") {
				uses = append(uses, ".ci/run")
			}
		}
	}
	for _, want := range []string{"goreleaser/goreleaser-action", ".ci/run"} {
		if !slices.ContainsFunc(uses, func(u string) bool { return strings.HasPrefix(u, want) }) {
			t.Errorf("release.yml: no step runs %s", want)
		}
	}

	if l := readFile(t, filepath.Join(root, "LICENSE")); !strings.Contains(l, "Apache License") || !strings.Contains(l, "Version 2.0, January 2004") {
		t.Error("LICENSE is not the Apache License 2.0")
	}
	if c := readFile(t, filepath.Join(root, "CHANGELOG.md")); !strings.Contains(c, "## [Unreleased]") || !strings.Contains(c, "keepachangelog.com") {
		t.Error("CHANGELOG.md does not keep a changelog (## [Unreleased])")
	}
	if goreleaser := tool(t, "goreleaser"); goreleaser != "" {
		if out, err := run(t, root, goreleaser, "check"); err != nil {
			t.Errorf("goreleaser check: %v\n%s", err, out)
		}
	}
}

// readPackage is the non-test Go source of one package of the module.
func readPackage(t *testing.T, pkg string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, pkg, "*.go"))
	var b strings.Builder
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b.WriteString(readFile(t, f))
		}
	}
	return b.String()
}

// TestDeployProxies: Caddy and nginx publish the webhooks and presence on
// HTTPS and nothing else, keep tokens in webhook paths out of access logs,
// and pass the client's address on; caddy validate and nginx -t accept them
// where installed.
func TestDeployProxies(t *testing.T) {
	caddyfile := filepath.Join("proxy", "Caddyfile")
	c := readFile(t, caddyfile)
	for _, want := range []string{"handle /v1/webhooks/*", "handle /v1/presence", "reverse_proxy 127.0.0.1:8080", "respond 404"} {
		if !strings.Contains(c, want) {
			t.Errorf("%s lacks %q", caddyfile, want)
		}
	}
	if regexp.MustCompile(`(?m)^\s*log\b`).MatchString(c) {
		t.Errorf("%s: an access log would record WEBHOOK_TOKEN in Voys/VoIPGRID paths", caddyfile)
	}
	nginxConf := filepath.Join("proxy", "nginx.conf")
	n := readFile(t, nginxConf)
	for _, want := range []string{"location /v1/webhooks/", "location = /v1/presence", "proxy_pass http://127.0.0.1:8080", "X-Forwarded-For", "listen 443 ssl", "return 404"} {
		if !strings.Contains(n, want) {
			t.Errorf("%s lacks %q", nginxConf, want)
		}
	}
	if loc := n[strings.Index(n, "location /v1/webhooks/"):]; !strings.Contains(loc[:strings.Index(loc, "}")], "access_log off") {
		t.Errorf("%s: the webhook location logs its paths, and with them WEBHOOK_TOKEN", nginxConf)
	}

	if caddy := tool(t, "caddy"); caddy != "" {
		abs, _ := filepath.Abs(caddyfile)
		if out, err := run(t, t.TempDir(), caddy, "validate", "--config", abs, "--adapter", "caddyfile"); err != nil {
			t.Errorf("caddy validate: %v\n%s", err, out)
		}
	}
	if nginx := tool(t, "nginx"); nginx != "" {
		dir := t.TempDir()
		cert, key := selfSigned(t, dir)
		site := strings.NewReplacer(
			"/etc/letsencrypt/live/voipbridge.example.com/fullchain.pem", cert,
			"/etc/letsencrypt/live/voipbridge.example.com/privkey.pem", key,
		).Replace(n)
		main := "pid " + filepath.Join(dir, "nginx.pid") + ";\nerror_log stderr;\nevents {}\nhttp {\n access_log off;\n include " + filepath.Join(dir, "site.conf") + ";\n}\n"
		writeFile(t, filepath.Join(dir, "site.conf"), site)
		writeFile(t, filepath.Join(dir, "main.conf"), main)
		if out, err := run(t, dir, nginx, "-t", "-q", "-p", dir, "-c", filepath.Join(dir, "main.conf")); err != nil {
			t.Errorf("nginx -t: %v\n%s", err, out)
		}
	}
}

// selfSigned writes a throw-away certificate for nginx -t.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "voipbridge.example.com"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"voipbridge.example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, key, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return cert, key
}

// TestDeployDocs: every variable the guides and the recipes' README name
// (a word in capitals with an underscore, in backticks) is one the bridge
// reads, and every relative link leads to a file.
func TestDeployDocs(t *testing.T) {
	v := loadVars(t)
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	pages = append(pages, "README.md")
	if len(pages) < 6 {
		t.Fatalf("docs/ has %d pages, want a guide per PBX", len(pages)-1)
	}
	// Not the bridge's, and said so where they appear.
	foreign := map[string]bool{
		"NAME_FILE":        true, // the pattern, not a name
		"SSL_CERT_DIR":     true, // Go's, for a private CA
		"SSL_CERT_FILE":    true,
		"VOIPBRIDGE_IMAGE": true, // the Compose files'
		"WEBHOOK_URL":      true, // the K2M and Komplit add-ons' setting
		"PLATFORM_URL":     true, // a shell variable in the VoIPGRID example
	}
	code := regexp.MustCompile("`([^`\n]+)`")
	word := regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b`)
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for _, p := range pages {
		text := readFile(t, p)
		for _, m := range code.FindAllStringSubmatch(text, -1) {
			for _, w := range word.FindAllString(m[1], -1) {
				base, isFile := strings.CutSuffix(w, "_FILE")
				if !v.known[w] && !(isFile && v.secret[base]) && !foreign[w] {
					t.Errorf("%s: `%s` names %s, which is not a variable of the bridge", p, m[1], w)
				}
			}
		}
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), target)); err != nil {
				t.Errorf("%s: link %s leads nowhere", p, target)
			}
		}
	}
}
