package k8s

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Kubeconfig returns the kubeconfig for the API server's
// --audit-webhook-config-file: it sends to Path at serverURL (such as
// "https://trail.example.com:8443"), trusts caPEM, and authenticates as
// user with the client certificate and key. The PEM blocks are embedded
// (the -data forms), so the file is the one secret to install: mode 0600.
func Kubeconfig(serverURL, user string, caPEM, certPEM, keyPEM []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	var b strings.Builder
	fmt.Fprintf(&b, `# Kubernetes audit webhook to trail: kube-apiserver --audit-webhook-config-file=THIS_FILE
apiVersion: v1
kind: Config
clusters:
- name: trail
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: trail
  context:
    cluster: trail
    user: %s
current-context: trail
`, strconv.Quote(strings.TrimSuffix(serverURL, "/")+Path), b64(caPEM), strconv.Quote(user), b64(certPEM), b64(keyPEM), strconv.Quote(user))
	return []byte(b.String())
}
