package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// object is one decoded Kubernetes manifest.
type object = map[string]any

// at walks nested maps; it returns nil where a key is missing.
func at(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func atString(v any, path ...string) string { s, _ := at(v, path...).(string); return s }
func atList(v any, path ...string) []any    { l, _ := at(v, path...).([]any); return l }
func atMap(v any, path ...string) map[string]any {
	m, _ := at(v, path...).(map[string]any)
	return m
}

func objID(o object) string { return atString(o, "kind") + "/" + atString(o, "metadata", "name") }

// manifests is the output of one `kustomize build`.
type manifests struct {
	path    string
	objects []object
}

func (ms manifests) named(kind, name string) object {
	for _, o := range ms.objects {
		if atString(o, "kind") == kind && atString(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

func (ms manifests) ofKind(kinds ...string) []object {
	var out []object
	for _, o := range ms.objects {
		if slices.Contains(kinds, atString(o, "kind")) {
			out = append(out, o)
		}
	}
	return out
}

func loadManifests(path string) (manifests, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return manifests{}, err
	}
	ms := manifests{path: path}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return ms, nil
		}
		if err != nil {
			return manifests{}, fmt.Errorf("%s: %w", path, err)
		}
		if o != nil {
			ms.objects = append(ms.objects, o)
		}
	}
}

// matches reports whether labels carry every key and value of selector.
func matches(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// drainDefault is MDS_COORDINATOR_DRAIN_TIMEOUT's default.
const drainDefault = 30 * time.Second

func parseSettingDuration(s string) (time.Duration, error) {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(secs * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// checkK8s checks what `kustomize build` cannot: that the built objects fit together
// and that the processor pods follow the operational rules of this project.
func checkK8s(args []string, probs *problems) (string, error) {
	fs := flag.NewFlagSet("k8s", flag.ContinueOnError)
	requireSecrets := fs.Bool("require-secrets", false, "every referenced Secret must be in the build output")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", fmt.Errorf("no file given")
	}
	var out []string
	for _, path := range fs.Args() {
		ms, err := loadManifests(path)
		if err != nil {
			return "", err
		}
		workloads := ms.ofKind("Deployment", "StatefulSet")
		if len(workloads) == 0 {
			probs.addf("%s: no Deployment or StatefulSet", path)
		}
		for _, w := range workloads {
			checkWorkload(ms, w, *requireSecrets, probs)
		}
		checkSelectors(ms, workloads, probs)
		out = append(out, fmt.Sprintf("%s: %d objects, %d workloads", path, len(ms.objects), len(workloads)))
	}
	return strings.Join(out, "; "), nil
}

func checkWorkload(ms manifests, w object, requireSecrets bool, probs *problems) {
	where := ms.path + ": " + objID(w)
	pod := atMap(w, "spec", "template", "spec")
	if !matches(atMap(w, "spec", "selector", "matchLabels"), atMap(w, "spec", "template", "metadata", "labels")) {
		probs.addf("%s: spec.selector does not select the pod template's labels", where)
	}
	grace := 30 * time.Second
	if g, ok := pod["terminationGracePeriodSeconds"].(int); ok {
		grace = time.Duration(g) * time.Second
	}
	podNonRoot, _ := at(pod, "securityContext", "runAsNonRoot").(bool)

	containers := atList(pod, "containers")
	all := append(slices.Clone(containers), atList(pod, "initContainers")...)
	for i, c := range all {
		cw := fmt.Sprintf("%s: container %s", where, atString(c, "name"))
		env := containerEnv(ms, c, cw, requireSecrets, probs)
		if i < len(containers) {
			if p := atString(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
				probs.addf("%s: livenessProbe must GET /healthz (has %q)", cw, p)
			}
			if p := atString(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
				probs.addf("%s: readinessProbe must GET /readyz (has %q)", cw, p)
			}
			drain := drainDefault
			if v, ok := env["MDS_COORDINATOR_DRAIN_TIMEOUT"]; ok {
				d, err := parseSettingDuration(v)
				if err != nil {
					probs.addf("%s: MDS_COORDINATOR_DRAIN_TIMEOUT %q: %v", cw, v, err)
				}
				drain = d
			}
			if grace <= drain {
				probs.addf("%s: terminationGracePeriodSeconds (%v) must exceed MDS_COORDINATOR_DRAIN_TIMEOUT (%v)", cw, grace, drain)
			}
		}
		if atString(c, "resources", "requests", "memory") == "" || atString(c, "resources", "limits", "memory") == "" {
			probs.addf("%s: needs resources.requests.memory and resources.limits.memory", cw)
		}
		sc := atMap(c, "securityContext")
		if nonRoot, set := sc["runAsNonRoot"].(bool); !(podNonRoot && !set || nonRoot) {
			probs.addf("%s: must run with runAsNonRoot: true", cw)
		}
		if sc["readOnlyRootFilesystem"] != true {
			probs.addf("%s: needs securityContext.readOnlyRootFilesystem: true", cw)
		}
		if sc["allowPrivilegeEscalation"] != false {
			probs.addf("%s: needs securityContext.allowPrivilegeEscalation: false", cw)
		}
		if !slices.Contains(atList(sc, "capabilities", "drop"), any("ALL")) {
			probs.addf("%s: needs securityContext.capabilities.drop: [ALL]", cw)
		}
	}
	for _, v := range atList(pod, "volumes") {
		if name := atString(v, "secret", "secretName"); name != "" {
			mustHave(ms, "Secret", name, where, requireSecrets, probs)
		}
		if name := atString(v, "configMap", "name"); name != "" {
			mustHave(ms, "ConfigMap", name, where, true, probs)
		}
	}
}

// containerEnv returns the literal environment of a container as the kubelet builds
// it (envFrom ConfigMaps first, then env), and checks every reference resolves.
func containerEnv(ms manifests, c any, where string, requireSecrets bool, probs *problems) map[string]string {
	env := map[string]string{}
	for _, from := range atList(c, "envFrom") {
		if name := atString(from, "configMapRef", "name"); name != "" {
			if cm := mustHave(ms, "ConfigMap", name, where, true, probs); cm != nil {
				for k, v := range atMap(cm, "data") {
					env[k] = fmt.Sprint(v)
				}
			}
		}
		if name := atString(from, "secretRef", "name"); name != "" {
			mustHave(ms, "Secret", name, where, requireSecrets, probs)
		}
	}
	for _, e := range atList(c, "env") {
		name := atString(e, "name")
		if v, ok := at(e, "value").(string); ok {
			env[name] = v
		}
		if ref := atString(e, "valueFrom", "configMapKeyRef", "name"); ref != "" {
			mustHave(ms, "ConfigMap", ref, where, true, probs)
		}
		if ref := atString(e, "valueFrom", "secretKeyRef", "name"); ref != "" {
			mustHave(ms, "Secret", ref, where, requireSecrets, probs)
		}
	}
	return env
}

func mustHave(ms manifests, kind, name, where string, required bool, probs *problems) object {
	o := ms.named(kind, name)
	if o == nil && required {
		probs.addf("%s: refers to %s %s, which the build does not contain", where, kind, name)
	}
	return o
}

// checkSelectors checks that Services, PodDisruptionBudgets, ServiceMonitors and
// KEDA ScaledObjects find what they are meant to.
func checkSelectors(ms manifests, workloads []object, probs *problems) {
	selectsPods := func(sel map[string]any) bool {
		for _, w := range workloads {
			if matches(sel, atMap(w, "spec", "template", "metadata", "labels")) {
				return true
			}
		}
		return false
	}
	for _, s := range ms.ofKind("Service") {
		if !selectsPods(atMap(s, "spec", "selector")) {
			probs.addf("%s: %s selects no workload's pods", ms.path, objID(s))
		}
	}
	for _, p := range ms.ofKind("PodDisruptionBudget") {
		if !selectsPods(atMap(p, "spec", "selector", "matchLabels")) {
			probs.addf("%s: %s selects no workload's pods (an empty selector would cover every pod of the namespace)", ms.path, objID(p))
		}
	}
	for _, sm := range ms.ofKind("ServiceMonitor") {
		var svc object
		for _, s := range ms.ofKind("Service") {
			if matches(atMap(sm, "spec", "selector", "matchLabels"), atMap(s, "metadata", "labels")) {
				svc = s
			}
		}
		if svc == nil {
			probs.addf("%s: %s selects no Service", ms.path, objID(sm))
			continue
		}
		var ports []any
		for _, p := range atList(svc, "spec", "ports") {
			ports = append(ports, at(p, "name"))
		}
		for _, ep := range atList(sm, "spec", "endpoints") {
			if port := at(ep, "port"); !slices.Contains(ports, port) {
				probs.addf("%s: %s endpoint port %v is not a port name of %s", ms.path, objID(sm), port, objID(svc))
			}
		}
	}
	for _, so := range ms.ofKind("ScaledObject") {
		kind := atString(so, "spec", "scaleTargetRef", "kind")
		if kind == "" {
			kind = "Deployment"
		}
		target := ms.named(kind, atString(so, "spec", "scaleTargetRef", "name"))
		if target == nil {
			probs.addf("%s: %s scales %s %s, which the build does not contain", ms.path, objID(so), kind, atString(so, "spec", "scaleTargetRef", "name"))
		} else if at(target, "spec", "replicas") != nil {
			probs.addf("%s: %s is scaled by %s but sets spec.replicas, which every apply would reset", ms.path, objID(target), objID(so))
		}
		minR, _ := at(so, "spec", "minReplicaCount").(int)
		maxR, _ := at(so, "spec", "maxReplicaCount").(int)
		if maxR < minR || maxR == 0 {
			probs.addf("%s: %s maxReplicaCount %d must be >= minReplicaCount %d and > 0", ms.path, objID(so), maxR, minR)
		}
	}
}

// checkYAML requires path to be well-formed YAML (every document of it).
func checkYAML(path string, probs *problems) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	docs := 0
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			probs.addf("%s: %v", path, err)
			return "", nil
		}
		docs++
	}
	return fmt.Sprintf("%s: %d documents", path, docs), nil
}
