// Command validate checks Rainbridge's Kubernetes manifests without a cluster: each document
// is decoded strictly into the official k8s.io/api type for its kind (an unknown or misspelt
// field, a duplicate key or a wrongly typed value is an error), and then the objects are
// checked against each other: probes and Service target ports name declared container ports,
// selectors match the pod's labels, mounts name volumes, referenced ConfigMaps, Secrets and
// Services are in the set, the ConfigMap's ports are the container's, and the pod runs as the
// image's non-root account on a read-only root filesystem.
//
// Usage: validate FILE.yaml... (exit 0: valid; 1: every problem printed, one a line)
package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// The image's account and volume (deploy/image): the pod must match them.
const (
	imageUID      = 10001
	imageVolume   = "/var/lib/rainbridge"
	masterKeyName = "master.key"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type manifests struct {
	statefulSets    []*appsv1.StatefulSet
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	networkPolicies []*networkingv1.NetworkPolicy
	problems        []string
}

func (m *manifests) fail(format string, args ...any) {
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

var separator = regexp.MustCompile(`(?m)^---\s*$`)

func (m *manifests) load(path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		m.fail("%s: %v", path, err)
		return
	}
	for i, doc := range separator.Split(string(raw), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		where := fmt.Sprintf("%s (document %d)", path, i+1)
		var tm typeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			m.fail("%s: not YAML: %v", where, err)
			continue
		}
		m.decode(where, tm, []byte(doc))
	}
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// decode strictly: UnmarshalStrict refuses unknown fields and duplicate keys.
func (m *manifests) decode(where string, tm typeMeta, doc []byte) {
	strict := func(into any) bool {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			m.fail("%s: %s %s: %v", where, tm.APIVersion, tm.Kind, err)
			return false
		}
		return true
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		if strict(o) {
			m.statefulSets = append(m.statefulSets, o)
		}
	case "v1 Service":
		o := &corev1.Service{}
		if strict(o) {
			m.services = append(m.services, o)
		}
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		if strict(o) {
			m.configMaps[o.Name] = o
		}
	case "v1 Secret":
		o := &corev1.Secret{}
		if strict(o) {
			m.secrets[o.Name] = o
		}
	case "networking.k8s.io/v1 NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		if strict(o) {
			m.networkPolicies = append(m.networkPolicies, o)
		}
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		// not an object of the cluster: `kubectl kustomize` checks it
	default:
		m.fail("%s: unexpected kind %q %q", where, tm.APIVersion, tm.Kind)
	}
}

func matches(selector, labels map[string]string) bool {
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

// ports: a container's declared ports by name and number.
func ports(c corev1.Container) (map[string]int32, map[int32]bool) {
	byName, byNumber := map[string]int32{}, map[int32]bool{}
	for _, p := range c.Ports {
		if p.Name != "" {
			byName[p.Name] = p.ContainerPort
		}
		byNumber[p.ContainerPort] = true
	}
	return byName, byNumber
}

func portDeclared(c corev1.Container, port string) bool {
	byName, byNumber := ports(c)
	if n, err := strconv.Atoi(port); err == nil {
		return byNumber[int32(n)]
	}
	_, ok := byName[port]
	return ok
}

func (m *manifests) checkStatefulSet(s *appsv1.StatefulSet) {
	where := "StatefulSet " + s.Name
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
		m.fail("%s: replicas must be 1 (one process per node directory)", where)
	}
	pod := s.Spec.Template
	if s.Spec.Selector == nil || !matches(s.Spec.Selector.MatchLabels, pod.Labels) {
		m.fail("%s: the selector does not match the pod template's labels", where)
	}
	if !m.hasService(s.Spec.ServiceName) {
		m.fail("%s: serviceName %q is not a Service here", where, s.Spec.ServiceName)
	}
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		m.fail("%s: the pod must set runAsNonRoot", where)
	}
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != imageUID {
		m.fail("%s: the pod must run as the image's uid %d", where, imageUID)
	}
	if sc == nil || sc.FSGroup == nil || *sc.FSGroup != imageUID {
		m.fail("%s: fsGroup must be the image's gid %d (the volume's files)", where, imageUID)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	claims := map[string]bool{}
	for _, c := range s.Spec.VolumeClaimTemplates {
		claims[c.Name] = true
		if _, clash := volumes[c.Name]; clash {
			m.fail("%s: %q is both a volume and a volume claim template", where, c.Name)
		}
	}
	for name, v := range volumes {
		if v.Secret != nil {
			m.checkSecretVolume(where, name, v.Secret)
		}
		if v.ConfigMap != nil {
			if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
				m.fail("%s: volume %q: ConfigMap %q is not here", where, name, v.ConfigMap.Name)
			}
		}
	}
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		cw := fmt.Sprintf("%s container %s", where, c.Name)
		csc := c.SecurityContext
		if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			m.fail("%s: readOnlyRootFilesystem must be true", cw)
		}
		if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			m.fail("%s: allowPrivilegeEscalation must be false", cw)
		}
		if csc == nil || csc.Capabilities == nil || len(csc.Capabilities.Drop) != 1 ||
			csc.Capabilities.Drop[0] != "ALL" {
			m.fail("%s: capabilities must drop ALL", cw)
		}
		mountsImageVolume := false
		for _, vm := range c.VolumeMounts {
			if _, ok := volumes[vm.Name]; !ok && !claims[vm.Name] {
				m.fail("%s: mount %q names no volume", cw, vm.Name)
			}
			if vm.MountPath == imageVolume && claims[vm.Name] {
				mountsImageVolume = true
			}
		}
		if !mountsImageVolume {
			m.fail("%s: the node's claim must be mounted at %s", cw, imageVolume)
		}
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				if _, ok := m.configMaps[e.ConfigMapRef.Name]; !ok {
					m.fail("%s: envFrom ConfigMap %q is not here", cw, e.ConfigMapRef.Name)
				}
			}
		}
	}
	for _, c := range pod.Spec.Containers {
		m.checkProbes(fmt.Sprintf("%s container %s", where, c.Name), c)
	}
}

func (m *manifests) checkSecretVolume(where, name string, v *corev1.SecretVolumeSource) {
	secret, ok := m.secrets[v.SecretName]
	if !ok {
		m.fail("%s: volume %q: Secret %q is not here (not even as an example)",
			where, name, v.SecretName)
		return
	}
	for _, item := range v.Items {
		_, inData := secret.Data[item.Key]
		_, inString := secret.StringData[item.Key]
		if !inData && !inString {
			m.fail("%s: volume %q: Secret %q has no key %q", where, name, v.SecretName, item.Key)
		}
	}
	if v.DefaultMode != nil && *v.DefaultMode&0o007 != 0 {
		m.fail("%s: volume %q: the secret's files must not be world-readable", where, name)
	}
}

func (m *manifests) checkProbes(where string, c corev1.Container) {
	env := m.env(c)
	apiHost := env["RAINBRIDGE_API_HOST"]
	offLoopback := apiHost != "" && apiHost != "127.0.0.1" && apiHost != "::1" &&
		apiHost != "localhost"
	probes := map[string]*corev1.Probe{
		"startupProbe":   c.StartupProbe,
		"livenessProbe":  c.LivenessProbe,
		"readinessProbe": c.ReadinessProbe,
	}
	want := map[string]string{
		"startupProbe":   "/healthz",
		"livenessProbe":  "/healthz",
		"readinessProbe": "/readyz",
	}
	for _, kind := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		p := probes[kind]
		if p == nil || p.HTTPGet == nil {
			m.fail("%s: %s must be an HTTP GET of %s", where, kind, want[kind])
			continue
		}
		if p.HTTPGet.Path != want[kind] {
			m.fail("%s: %s asks %q, the node answers it on %q", where, kind, p.HTTPGet.Path,
				want[kind])
		}
		if !portDeclared(c, p.HTTPGet.Port.String()) {
			m.fail("%s: %s port %q is not a declared container port", where, kind,
				p.HTTPGet.Port.String())
		}
		if offLoopback && p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			m.fail("%s: %s must use HTTPS: the API listens on %s, where it speaks HTTPS",
				where, kind, apiHost)
		}
		byName, _ := ports(c)
		if api, ok := env["RAINBRIDGE_API_PORT"]; ok &&
			strconv.Itoa(int(byName[p.HTTPGet.Port.String()])) != api {
			m.fail("%s: %s goes to port %s, the API listens on %s", where, kind,
				p.HTTPGet.Port.String(), api)
		}
	}
	// the ConfigMap's ports are the ports the container declares
	byName, _ := ports(c)
	for variable, name := range map[string]string{
		"RAINBRIDGE_API_PORT":        "api",
		"RAINBRIDGE_DATA_PLANE_PORT": "data",
		"RAINBRIDGE_METRICS_PORT":    "metrics",
	} {
		value, set := env[variable]
		declared, ok := byName[name]
		if set && (!ok || strconv.Itoa(int(declared)) != value) {
			m.fail("%s: %s is %s but container port %q is %d", where, variable, value, name,
				declared)
		}
	}
	keyFile := env["RAINBRIDGE_CRYPTO_MASTER_KEY_FILE"]
	if keyFile != "" && !m.mountedFromSecret(c, keyFile) {
		m.fail("%s: the master key file %s is not a Secret's %s mounted in the container",
			where, keyFile, masterKeyName)
	}
}

// env: the container's environment from its ConfigMaps and literal values.
func (m *manifests) env(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			if cm, ok := m.configMaps[e.ConfigMapRef.Name]; ok {
				for k, v := range cm.Data {
					out[e.Prefix+k] = v
				}
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			out[e.Name] = e.Value
		}
	}
	return out
}

func (m *manifests) mountedFromSecret(c corev1.Container, file string) bool {
	for _, s := range m.statefulSets {
		for _, v := range s.Spec.Template.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			for _, vm := range c.VolumeMounts {
				if vm.Name != v.Name || !vm.ReadOnly {
					continue
				}
				for _, item := range v.Secret.Items {
					if strings.TrimSuffix(vm.MountPath, "/")+"/"+item.Path == file &&
						item.Key == masterKeyName {
						return true
					}
				}
			}
		}
	}
	return false
}

func (m *manifests) hasService(name string) bool {
	for _, s := range m.services {
		if s.Name == name {
			return true
		}
	}
	return false
}

func (m *manifests) checkService(svc *corev1.Service) {
	where := "Service " + svc.Name
	found := false
	for _, s := range m.statefulSets {
		pod := s.Spec.Template
		if !matches(svc.Spec.Selector, pod.Labels) {
			continue
		}
		found = true
		for _, p := range svc.Spec.Ports {
			declared := false
			for _, c := range pod.Spec.Containers {
				if portDeclared(c, p.TargetPort.String()) {
					declared = true
				}
			}
			if !declared {
				m.fail("%s: targetPort %q is not a port of the pod", where, p.TargetPort.String())
			}
		}
	}
	if !found {
		m.fail("%s: its selector matches no pod here", where)
	}
}

func (m *manifests) checkNetworkPolicy(np *networkingv1.NetworkPolicy) {
	where := "NetworkPolicy " + np.Name
	for _, s := range m.statefulSets {
		pod := s.Spec.Template
		if !matches(np.Spec.PodSelector.MatchLabels, pod.Labels) {
			m.fail("%s: its podSelector does not match StatefulSet %s's pod", where, s.Name)
			continue
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port == nil {
					continue
				}
				declared := false
				for _, c := range pod.Spec.Containers {
					if portDeclared(c, p.Port.String()) {
						declared = true
					}
				}
				if !declared {
					m.fail("%s: port %q is not a port of the pod", where, p.Port.String())
				}
			}
		}
	}
}

// Names that say "secret": their values belong in a Secret, never in a ConfigMap.
var secretish = regexp.MustCompile(`(?i)(MASTER_KEY$|PASSWORD|TOKEN|SECRET|DATABASE_URL)`)
var urlPassword = regexp.MustCompile(`://[^/@\s]*:[^/@\s]+@`)

func (m *manifests) checkConfigMap(cm *corev1.ConfigMap) {
	keys := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := cm.Data[k]
		if secretish.MatchString(k) {
			m.fail("ConfigMap %s: %s belongs in a Secret", cm.Name, k)
		}
		if urlPassword.MatchString(v) {
			m.fail("ConfigMap %s: %s holds a URL with a password", cm.Name, k)
		}
		if regexp.MustCompile(`^[0-9a-fA-F]{64}$`).MatchString(strings.TrimSpace(v)) {
			m.fail("ConfigMap %s: %s looks like a key (64 hex digits)", cm.Name, k)
		}
	}
	if len(cm.BinaryData) > 0 {
		m.fail("ConfigMap %s: binaryData is not expected", cm.Name)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: validate FILE.yaml...")
		os.Exit(2)
	}
	m := &manifests{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, path := range os.Args[1:] {
		m.load(path)
	}
	if len(m.statefulSets) == 0 {
		m.fail("no StatefulSet among the manifests")
	}
	for _, s := range m.statefulSets {
		m.checkStatefulSet(s)
	}
	for _, s := range m.services {
		m.checkService(s)
	}
	for _, np := range m.networkPolicies {
		m.checkNetworkPolicy(np)
	}
	for _, cm := range m.configMaps {
		m.checkConfigMap(cm)
	}
	if len(m.problems) > 0 {
		var b bytes.Buffer
		for _, p := range m.problems {
			b.WriteString(p + "\n")
		}
		os.Stderr.Write(b.Bytes())
		os.Exit(1)
	}
	fmt.Printf("%d StatefulSet, %d Service, %d ConfigMap, %d Secret, %d NetworkPolicy: valid\n",
		len(m.statefulSets), len(m.services), len(m.configMaps), len(m.secrets),
		len(m.networkPolicies))
}
