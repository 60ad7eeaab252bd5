package k8s

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Kubeconfig returns a kubeconfig for the API server's
// --audit-webhook-config-file, in the shape trail cert issue writes: it
// sends to Path at serverURL (such as "https://trail.example.com:8443"),
// trusts the CA certificate in caFile, and authenticates as user with the
// client certificate in certFile and its key in keyFile. Give absolute
// paths: the API server resolves relative ones against its own working
// directory. No key is copied into the file.
func Kubeconfig(serverURL, user, caFile, certFile, keyFile string) []byte {
	return fmt.Appendf(nil, `# trail: kube-apiserver --audit-webhook-config-file.
apiVersion: v1
kind: Config
clusters:
- name: trail
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: trail
  context:
    cluster: trail
    user: %s
current-context: trail
`, quote(strings.TrimSuffix(serverURL, "/")+Path), quote(caFile), quote(user), quote(certFile), quote(keyFile), quote(user))
}

// quote returns s as a YAML double-quoted scalar: a JSON string is one.
func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
