// Package ops serves a revenant node's operational HTTP endpoints: the
// liveness and readiness probes, Prometheus metrics, and a web dashboard
// that answers an operator's questions: what is stuck (and why), what will
// recovery do, why did this episode fail, where is this workflow.
//
//	/healthz       liveness: 200 "ok" while the process serves HTTP; it never
//	               touches the database, so a database outage does not get
//	               every pod restarted
//	/readyz        readiness: 200 when Client.Ready says the node can work,
//	               else 503 with the reason (within Config.ReadyTimeout)
//	/metrics       Config.Metrics (e.g. the metrics package's Handler), or 404
//	/              overview: nodes, backlog, stuck episodes explained, breakers
//	/recovery      the recovery dry run: what the next sweep would do
//	/episodes      episodes by status, actor, error class; /episodes/{id}:
//	               the row, error, requeues, journal timeline, explanation
//	/dead-letters  failed episodes, with requeue buttons
//	/workflows     workflow instances; /workflows/{id}: the DAG and steps
//
// The dashboard is server-rendered HTML (no JavaScript) with relative links
// only, so it can be mounted under any prefix:
//
//	h, err := ops.New(client, &ops.Config{Metrics: m.Handler()})
//	if err != nil { ... }
//	mux.Handle("/revenant/", http.StripPrefix("/revenant", h))
//
// It works on a started node as well as on an unstarted client opened only
// for administration (revenant.New with SkipMigrate, never Started), which
// is what the revenant CLI's dashboard command serves; such a client is not
// a node, so its /readyz answers 503.
//
// # Data and actions
//
// By default the dashboard is read-only and never shows episode inputs,
// results, metadata or step outputs, which may hold personal data (their
// sizes are shown). Config.ShowData shows them. Config.Actions adds buttons
// (requeue, cancel, resume or cancel a workflow, open or close a breaker):
// each is a POST carrying a CSRF token bound to the browser's cookie, and
// cross-site requests are refused (http.CrossOriginProtection). A DSN or
// password is never shown, even in a database error.
//
// # Authentication
//
// The handler has no authentication of its own: wrap it in the host's,
// and keep the probes outside it (the kubelet does not log in):
//
//	dash, _ := ops.New(client, &ops.Config{Actions: true,
//		Operator: func(r *http.Request) string { return userFrom(r.Context()) }})
//	mux.Handle("/revenant/", http.StripPrefix("/revenant", requireAdmin(dash)))
//	mux.Handle("/healthz", dash) // the probes, unauthenticated
//	mux.Handle("/readyz", dash)
//
// where requireAdmin is your middleware, for example:
//
//	func requireAdmin(next http.Handler) http.Handler {
//		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//			user, pass, ok := r.BasicAuth()
//			if !ok || !validAdmin(user, pass) {
//				w.Header().Set("WWW-Authenticate", `Basic realm="revenant"`)
//				http.Error(w, "unauthorized", http.StatusUnauthorized)
//				return
//			}
//			next.ServeHTTP(w, r.WithContext(withUser(r.Context(), user)))
//		})
//	}
//
// # Kubernetes probes
//
//	livenessProbe:
//	  httpGet: {path: /healthz, port: 8080}
//	  periodSeconds: 10
//	  failureThreshold: 3
//	readinessProbe:
//	  httpGet: {path: /readyz, port: 8080}
//	  periodSeconds: 5
//	  timeoutSeconds: 3      # above Config.ReadyTimeout (2s)
//	  failureThreshold: 2
//
// A pod that loses the database goes unready, so it gets no traffic, but
// is not restarted: a restart would not bring the database back. Whether a
// node is dead, and its episodes orphaned, is judged by the database
// (heartbeat and session lock), never by these probes.
package ops
