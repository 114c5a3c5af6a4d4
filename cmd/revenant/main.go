// Command revenant is the operator's command line for a revenant database
// (PostgreSQL or SQLite): it applies and exports the schema, answers the
// three operator questions (what is stuck? why? what will recovery do?),
// requeues and cancels episodes, sweeps, defines actors' recovery policies,
// resumes and cancels workflow instances, opens and closes breakers, and
// serves the dashboard.
//
// Install it with
//
//	go install github.com/revenant-go/revenant/cmd/revenant@latest
//
// and point it at a database with --database-url or DATABASE_URL:
// postgres://… or postgresql://… (opened with lib/pq), or sqlite:PATH,
// sqlite://PATH or a path ending in .db, .sqlite or .sqlite3.
//
// The CLI is not a node: it never claims work and registers nothing. Its
// commands read and change the database through revenant's public packages.
//
// Exit codes:
//
//	0  success
//	1  error (database, I/O)
//	2  usage error (unknown command or flag, bad argument, no database URL)
//	3  not found (episode, workflow instance, actor definition)
//	4  declined or unconfirmed (a destructive command without --yes when
//	   stdin is not a terminal, or answered no)
//	5  status found something that needs attention (dead nodes owning
//	   episodes, unclaimable backlog, exhausted episodes, open breakers,
//	   a failed last sweep)
//	6  a workflow request (resume, cancel) was not applied by a live node
//	   within --wait
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
