// Command deploycheck validates the files under deployments/ offline, for
// deployments/check.sh. It is a module of its own so that its dependencies (the
// Compose loader, the Dockerfile parser, the PromQL parser) stay out of the
// service's go.mod.
//
//	deploycheck dockerfile FILE
//	    parses FILE as BuildKit does, fails on parse errors and lint warnings, and
//	    requires the last stage to run as a non-root USER.
//	deploycheck compose FILE
//	    loads FILE with the loader of `docker compose` (schema, interpolation,
//	    depends_on consistency) and requires every bind-mount source and build
//	    context to exist.
//	deploycheck metrics --scrape FILE [--rules FILE]... [--dashboard FILE]... [--prefix mds_]
//	    parses every PromQL expression of the alert rules and the Grafana
//	    dashboards (targets, annotations, label_values variables; Grafana
//	    variables replaced by harmless values) and requires every metric name
//	    with the prefix to be a series name in the scrape: histogram names only as
//	    _bucket/_sum/_count, summary names bare or as _sum/_count.
//	deploycheck k8s [--require-secrets] FILE...
//	    checks the output of `kustomize build`: workload selectors, probes on
//	    /healthz and /readyz, terminationGracePeriodSeconds above
//	    MDS_COORDINATOR_DRAIN_TIMEOUT (from the container's ConfigMaps and env),
//	    memory requests and limits, non-root read-only containers without
//	    capabilities, ConfigMap (and with the flag Secret) references, and the
//	    selectors of Services, PodDisruptionBudgets, ServiceMonitors and KEDA
//	    ScaledObjects.
//	deploycheck yaml FILE...
//	    requires every document of each FILE to be well-formed YAML.
//	deploycheck dashboard FILE...
//	    checks Grafana dashboard structure: unique panel ids, a data source on
//	    every panel, unique refIds per panel, an expression on every target.
//
// Every failure is printed on its own line; the exit status is 1 if any check
// failed, 2 on usage errors.
package main
