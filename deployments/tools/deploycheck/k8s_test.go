package main

import (
	"bytes"
	"strings"
	"testing"
)

// goodK8s is a minimal build output that passes every check.
const goodK8s = `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg-abc}
data: {MDS_COORDINATOR_DRAIN_TIMEOUT: 30s}
---
apiVersion: v1
kind: Secret
metadata: {name: db-abc}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: p}
spec:
  replicas: 2
  selector: {matchLabels: {app: p}}
  template:
    metadata: {labels: {app: p, tier: x}}
    spec:
      terminationGracePeriodSeconds: 60
      securityContext: {runAsNonRoot: true}
      containers:
        - name: processor
          envFrom: [{configMapRef: {name: cfg-abc}}]
          env: [{name: MDS_DATABASE_URL, valueFrom: {secretKeyRef: {name: db-abc, key: url}}}]
          livenessProbe: {httpGet: {path: /healthz, port: http}}
          readinessProbe: {httpGet: {path: /readyz, port: http}}
          resources: {requests: {memory: 1Mi}, limits: {memory: 2Mi}}
          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: p, labels: {app: p}}
spec:
  selector: {app: p}
  ports: [{name: http, port: 9090}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: p}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: p}}}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: p}
spec:
  selector: {matchLabels: {app: p}}
  endpoints: [{port: http}]
`

func TestK8s(t *testing.T) {
	tests := []struct {
		name, old, new, want string
	}{
		{"valid", "", "", ""},
		{"grace not above drain", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 30", "must exceed MDS_COORDINATOR_DRAIN_TIMEOUT (30s)"},
		{"drain in bare seconds", "MDS_COORDINATOR_DRAIN_TIMEOUT: 30s", "MDS_COORDINATOR_DRAIN_TIMEOUT: \"90\"", "(1m0s) must exceed MDS_COORDINATOR_DRAIN_TIMEOUT (1m30s)"},
		{"liveness path", "path: /healthz", "path: /readyz", "livenessProbe must GET /healthz"},
		{"missing configmap", "configMapRef: {name: cfg-abc}", "configMapRef: {name: cfg}", "refers to ConfigMap cfg"},
		{"missing secret", "secretKeyRef: {name: db-abc", "secretKeyRef: {name: db", "refers to Secret db"},
		{"root", "securityContext: {runAsNonRoot: true}", "securityContext: {}", "runAsNonRoot"},
		{"writable root fs", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"capabilities", "drop: [ALL]", "drop: [NET_RAW]", "capabilities.drop"},
		{"memory limit", "limits: {memory: 2Mi}", "limits: {}", "resources.limits.memory"},
		{"pdb without selector", "maxUnavailable: 1, selector: {matchLabels: {app: p}}", "maxUnavailable: 1", "PodDisruptionBudget/p selects no workload's pods"},
		{"service selector", "selector: {app: p}", "selector: {app: q}", "Service/p selects no workload's pods"},
		{"servicemonitor port", "endpoints: [{port: http}]", "endpoints: [{port: metrics}]", "endpoint port metrics is not a port name"},
		{"scaledobject and replicas", "", "---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: p}\nspec: {scaleTargetRef: {name: p}, minReplicaCount: 2, maxReplicaCount: 6}\n", "sets spec.replicas"},
		{"scaledobject target", "", "---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: p}\nspec: {scaleTargetRef: {name: q}, minReplicaCount: 2, maxReplicaCount: 6}\n", "scales Deployment q"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			manifest := goodK8s
			if tt.old != "" {
				if !strings.Contains(manifest, tt.old) {
					t.Fatalf("fixture lacks %q", tt.old)
				}
				manifest = strings.Replace(manifest, tt.old, tt.new, 1)
			} else {
				manifest += tt.new
			}
			var out bytes.Buffer
			code := run([]string{"k8s", "--require-secrets", writeFile(t, "k.yaml", manifest)}, &out, &out)
			if tt.want == "" {
				if code != 0 {
					t.Fatalf("exit %d for a valid manifest:\n%s", code, out.String())
				}
				return
			}
			if code != 1 || !strings.Contains(out.String(), tt.want) {
				t.Errorf("exit %d, want 1 and a failure containing %q:\n%s", code, tt.want, out.String())
			}
		})
	}
}
