package ops

import (
	"context"
	"errors"
	"net/http"
	"regexp"

	"github.com/revenant-go/revenant"
)

// errorStatus is the HTTP status of a page that failed with err.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, revenant.ErrNotFound), errors.Is(err, errNoSuchPage):
		return http.StatusNotFound
	case errors.Is(err, errBadRequest), errors.Is(err, revenant.ErrInvalidInput):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), revenant.IsRetryable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

var (
	errNoSuchPage = errors.New("not found")
	errBadRequest = errors.New("bad request")
)

// Database drivers may quote connection settings in their errors: URLs
// (with credentials) and key=value passwords are blanked before an error
// reaches a page or the log.
var (
	urlPattern      = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'` + "`" + `]*[^\s"'` + "`" + `:,.;)]`)
	passwordPattern = regexp.MustCompile(`(?i)(password|passwd|pwd)\s*=\s*('[^']*'|\S+)`)
)

// sanitize removes what could be a DSN or a password from msg.
func sanitize(msg string) string {
	msg = urlPattern.ReplaceAllString(msg, "[url removed]")
	return passwordPattern.ReplaceAllString(msg, "$1=[removed]")
}
