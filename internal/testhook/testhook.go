// Package testhook lets revenant's own tests reach behaviour no user should
// configure: each package that offers a hook sets its function here in an
// init. Nothing here is public API.
package testhook

// DropOutboxNotifications makes an outbox bus (a *bus.Outbox) ask drop
// for each notification it receives, and discard it when drop says true:
// tests that simulate lost notifications. Set by package bus.
var DropOutboxNotifications func(outbox any, drop func() bool)
