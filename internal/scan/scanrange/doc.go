// Package scanrange holds the test range of trail scan: real TLS servers
// (openssl s_server, nginx, gnutls-serv and trail's own listener), each
// configured to show one weakness, built and torn down by its tests on
// the loopback interface of a private network namespace, then scanned by
// internal/scan and by testssl.sh and the two compared. The package has
// no code of its own: see range_test.go for the endpoints and what each
// must grade, and docs/scan.md for what the range covers and how scan and
// testssl.sh differ on it.
//
// The tests re-execute their own binary under "unshare --net", so every
// server, the scanner and testssl.sh share a loopback interface no other
// process can reach (gnutls-serv cannot be told to bind one address).
// That needs root (or CAP_SYS_ADMIN); without it the range is skipped,
// unless CI is set, when it fails.
package scanrange
