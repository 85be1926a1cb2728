// Package deploy holds what it takes to run widgetq (Dockerfile, compose,
// Kubernetes, systemd, Prometheus alerts, a Grafana dashboard) and a test
// that none of it drifts from the binaries: every variable, flag, probe,
// port and metric it names must be one the code really has.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var helps = map[string]string{} // binary → its help texts

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "widgetq-deploy")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for bin, args := range map[string][][]string{
		"worker":        {{"-help"}},
		"enqueue":       {{"--help"}, {"serve", "--help"}, {"status", "--help"}},
		"kommo-sandbox": {{"-help"}},
	} {
		out := filepath.Join(dir, bin)
		if b, err := exec.Command("go", "build", "-o", out, "../cmd/"+bin).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", bin, err, b)
			os.Exit(1)
		}
		for _, a := range args {
			b, _ := exec.Command(out, a...).CombinedOutput()
			helps[bin] += string(b) + "\n"
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var envName = regexp.MustCompile(`\b(?:REDIS_URL|KOMMO_[A-Z_]+|WIDGETQ_[A-Z_]+)\b`)

func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, bin := range []string{"worker", "enqueue"} {
		for _, n := range envName.FindAllString(helps[bin], -1) {
			known[n] = true
		}
	}
	if !known["WIDGETQ_SECRET_KEY"] || !known["WIDGETQ_ADMIN_ADDR"] || !known["WIDGETQ_API_TOKEN"] {
		t.Fatalf("the binaries' help does not name their variables: %v", known)
	}
	return known
}

// docs decodes every YAML document of a file.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, d)
	}
}

func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func seconds(t *testing.T, s string) float64 {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d.Seconds()
}

func TestKubernetesManifests(t *testing.T) {
	known := knownEnv(t)
	cm := docs(t, "k8s/configmap.yaml")[0]
	sec := docs(t, "k8s/secret.yaml")[0]
	for _, m := range []map[string]any{get(cm, "data").(map[string]any), get(sec, "stringData").(map[string]any)} {
		for k := range m {
			if !known[k] {
				t.Errorf("k8s: %s is no variable of the worker (worker -help)", k)
			}
		}
	}
	var dep, svc, pdb map[string]any
	for _, d := range docs(t, "k8s/worker.yaml") {
		switch d["kind"] {
		case "Deployment":
			dep = d
		case "Service":
			svc = d
		case "PodDisruptionBudget":
			pdb = d
		}
	}
	if dep == nil || svc == nil || pdb == nil {
		t.Fatal("k8s/worker.yaml wants a Deployment, a Service and a PodDisruptionBudget")
	}
	spec := get(dep, "spec", "template", "spec")
	c := get(spec, "containers", 0)
	if cmd := get(c, "command", 0); cmd != "worker" {
		t.Errorf("container command %v", cmd)
	}
	if p := get(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness probe path %v, want /healthz", p)
	}
	if cmd := fmt.Sprint(get(c, "readinessProbe", "exec", "command")); cmd != "[worker probe readyz]" || !strings.Contains(helps["worker"], "worker probe healthz|readyz") {
		t.Errorf("readiness probe %v is not the worker's own probe of /readyz", cmd)
	}
	_, port, _ := strings.Cut(get(cm, "data", "WIDGETQ_ADMIN_ADDR").(string), ":")
	if fmt.Sprint(get(c, "ports", 0, "containerPort")) != port || get(c, "ports", 0, "name") != "admin" {
		t.Errorf("container port %v, the admin server listens on %s", get(c, "ports"), port)
	}
	if fmt.Sprint(get(svc, "spec", "ports", 0, "port")) != port {
		t.Errorf("service port %v, want %s", get(svc, "spec", "ports", 0, "port"), port)
	}
	grace := get(spec, "terminationGracePeriodSeconds").(int)
	if shutdown := seconds(t, get(cm, "data", "WIDGETQ_SHUTDOWN_TIMEOUT").(string)); float64(grace) <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %d is not above WIDGETQ_SHUTDOWN_TIMEOUT %vs", grace, shutdown)
	}
	for _, ef := range get(c, "envFrom").([]any) {
		name := get(ef, "configMapRef", "name")
		if name == nil {
			name = get(ef, "secretRef", "name")
		}
		if name != get(cm, "metadata", "name") && name != get(sec, "metadata", "name") {
			t.Errorf("envFrom %v names neither the ConfigMap nor the Secret", ef)
		}
	}
}

func TestCompose(t *testing.T) {
	known := knownEnv(t)
	d := docs(t, "compose.yaml")[0]
	services := get(d, "services").(map[string]any)
	for name, s := range services {
		envs, _ := get(s, "environment").(map[string]any)
		for k := range envs {
			if !known[k] {
				t.Errorf("compose %s: %s is no variable of the binaries", name, k)
			}
		}
		cmd, _ := get(s, "command").([]any)
		if len(cmd) == 0 {
			continue
		}
		bin := cmd[0].(string)
		if bin == "redis-server" {
			if !strings.Contains(fmt.Sprint(cmd), "--appendonly yes") {
				t.Errorf("compose %s: Redis without AOF", name)
			}
			continue
		}
		help, ok := helps[bin]
		if !ok {
			t.Errorf("compose %s: %s is not one of the binaries", name, bin)
			continue
		}
		for _, a := range cmd[1:] {
			if f := a.(string); strings.HasPrefix(f, "-") && !strings.Contains(help, strings.TrimLeft(f, "-")) {
				t.Errorf("compose %s: %s has no flag %s", name, bin, f)
			}
		}
	}
	w := services["worker"]
	if seconds(t, get(w, "stop_grace_period").(string)) <= seconds(t, get(w, "environment", "WIDGETQ_SHUTDOWN_TIMEOUT").(string)) {
		t.Error("compose worker: stop_grace_period is not above WIDGETQ_SHUTDOWN_TIMEOUT")
	}
	if _, port, _ := strings.Cut(get(w, "environment", "WIDGETQ_ADMIN_ADDR").(string), ":"); !strings.Contains(fmt.Sprint(get(w, "ports")), port) {
		t.Errorf("compose worker: admin port %s not published: %v", port, get(w, "ports"))
	}
}

func TestSystemdUnit(t *testing.T) {
	known := knownEnv(t)
	b, err := os.ReadFile("systemd/widgetq-worker.service")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	var stop, exec string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Environment="); ok {
			k, val, _ := strings.Cut(v, "=")
			if !known[k] {
				t.Errorf("systemd: %s is no variable of the worker", k)
			}
			env[k] = val
		}
		if v, ok := strings.CutPrefix(line, "TimeoutStopSec="); ok {
			stop = v + "s"
		}
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = v
		}
	}
	if filepath.Base(exec) != "worker" {
		t.Errorf("ExecStart=%s", exec)
	}
	if seconds(t, stop) <= seconds(t, env["WIDGETQ_SHUTDOWN_TIMEOUT"]) {
		t.Errorf("TimeoutStopSec %s is not above WIDGETQ_SHUTDOWN_TIMEOUT %s", stop, env["WIDGETQ_SHUTDOWN_TIMEOUT"])
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, bin := range []string{"worker", "enqueue", "kommo-sandbox"} {
		if !strings.Contains(s, "./cmd/"+bin) {
			t.Errorf("Dockerfile does not build %s", bin)
		}
	}
	for _, m := range regexp.MustCompile(`\./cmd/([a-z-]+)`).FindAllStringSubmatch(s, -1) {
		if _, err := os.Stat(filepath.Join("..", "cmd", m[1])); err != nil {
			t.Errorf("Dockerfile builds ./cmd/%s, which does not exist", m[1])
		}
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(s)
	if user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("Dockerfile runs as root: %v", user)
	}
	if !regexp.MustCompile(`(?m)^EXPOSE .*\b9090\b`).MatchString(s) || !strings.Contains(s, "CGO_ENABLED=0") {
		t.Error("Dockerfile: want static binaries and the admin port 9090 exposed")
	}
}

// metricNames are the series internal/metrics defines.
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../internal/metrics/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:Name: |NewDesc\()"(widgetq_[a-z_]+)"`).FindAllStringSubmatch(string(b), -1) {
		names[m[1]] = true
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			names[m[1]+suffix] = true
		}
	}
	if len(names) < 8 {
		t.Fatalf("found too few metrics in internal/metrics: %v", names)
	}
	return names
}

func TestAlertsAndDashboardUseRealMetrics(t *testing.T) {
	names := metricNames(t)
	used := regexp.MustCompile(`\bwidgetq_[a-z_]+\b`)
	rules := docs(t, "prometheus/alerts.yaml")[0]
	n := 0
	for _, g := range get(rules, "groups").([]any) {
		for _, r := range get(g, "rules").([]any) {
			n++
			expr := get(r, "expr").(string)
			if get(r, "alert") == nil || get(r, "annotations", "summary") == nil {
				t.Errorf("rule %v lacks a name or a summary", r)
			}
			for _, m := range used.FindAllString(expr, -1) {
				if !names[m] {
					t.Errorf("alert %v uses %s, which widgetq does not export", get(r, "alert"), m)
				}
			}
		}
	}
	for _, want := range []string{"widgetq_queue_latency_seconds", "widgetq_tasks_total", "widgetq_blocked_accounts", "widgetq_kommo_rate_limited_total", "widgetq_webhook_oldest_undelivered_seconds", "widgetq_webhook_deliveries_total"} {
		b, _ := os.ReadFile("prometheus/alerts.yaml")
		if !strings.Contains(string(b), want) {
			t.Errorf("no alert on %s", want)
		}
	}
	b, err := os.ReadFile("grafana/widgetq.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/widgetq.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range used.FindAllString(tg.Expr, -1) {
				if !names[m] {
					t.Errorf("panel %q uses %s, which widgetq does not export", p.Title, m)
				}
			}
		}
	}
	if n < 4 || len(dash.Panels) < 6 {
		t.Errorf("%d alerts, %d panels", n, len(dash.Panels))
	}
}
