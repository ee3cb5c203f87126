// Command render renders a Helm chart the way `helm template` does, for tests
// on machines without Helm (deploy/helm/render_test.py renders
// deploy/helm/packd with it).
//
//	render [-f VALUES.yaml]... [--set KEY=VALUE[,KEY=VALUE]...]... [--name RELEASE]
//	       [--namespace NS] [--kube-version v1.29.0] [--api-versions GROUP/VERSION]...
//	       [--notes FILE] CHART_DIR
//
// What it implements of Helm 3 (https://helm.sh/docs/chart_template_guide/):
//   - .Values: the chart's values.yaml, then each -f file, then each --set, deep
//     merged (maps merge key by key, anything else is replaced, later wins, a
//     null deletes the key). Numbers from files become float64, as in Helm
//     (which reads values through JSON); --set integers are int64, as in Helm.
//   - .Release (Name, Namespace, Service "Helm", IsInstall true, IsUpgrade
//     false, Revision 1), .Chart (from Chart.yaml), .Capabilities
//     (KubeVersion, APIVersions.Has, HelmVersion), .Template (Name, BasePath).
//   - Functions: sprig's (TxtFuncMap, minus env and expandenv, as in Helm) and
//     Helm's include, tpl, required, fail, toYaml, fromYaml, fromYamlArray,
//     toJson, fromJson, fromJsonArray, lookup (always an empty map: there is
//     no cluster).
//   - Every file under templates/ is a template; those whose base name starts
//     with "_" are only definitions and NOTES.txt is rendered apart (--notes).
//     The output is one YAML stream, "---\n# Source: CHART/templates/FILE\n"
//     before each document, documents in Helm's install order by kind; empty
//     documents are dropped. A chart's kubeVersion constraint is checked.
//
// Not implemented (a template using them fails or renders differently):
// subcharts and dependencies, hooks (rendered like any manifest), .Files,
// values.schema.json, toToml, --set list indices and {a,b} lists,
// --set-string/--set-file, and anything that needs a cluster.
//
// Errors (a template's with its name and line, a document that is not YAML,
// a bad values file) go to stderr, and the exit status is 1.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

// chartMetadata is what templates see as .Chart: Chart.yaml's fields, named
// as in Helm's chart.Metadata (a misspelt field is a template error there
// and here).
type chartMetadata struct {
	APIVersion  string            `yaml:"apiVersion"`
	Name        string            `yaml:"name"`
	Version     string            `yaml:"version"`
	AppVersion  string            `yaml:"appVersion"`
	KubeVersion string            `yaml:"kubeVersion"`
	Description string            `yaml:"description"`
	Type        string            `yaml:"type"`
	Home        string            `yaml:"home"`
	Icon        string            `yaml:"icon"`
	Keywords    []string          `yaml:"keywords"`
	Sources     []string          `yaml:"sources"`
	Annotations map[string]string `yaml:"annotations"`
	Deprecated  bool              `yaml:"deprecated"`
}

// release is .Release, as `helm template` fills it (a first install).
type release struct {
	Name      string
	Namespace string
	Service   string
	IsInstall bool
	IsUpgrade bool
	Revision  int
}

// kubeVersion is .Capabilities.KubeVersion.
type kubeVersion struct {
	Version string // "v1.29.0"
	Major   string // "1"
	Minor   string // "29"
}

func (k kubeVersion) String() string     { return k.Version }
func (k kubeVersion) GitVersion() string { return k.Version }

// versionSet is .Capabilities.APIVersions: "group/version" and
// "group/version/Kind" strings.
type versionSet []string

// Has reports whether the cluster is assumed to serve apiVersion.
func (v versionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type helmVersion struct {
	Version      string
	GitCommit    string
	GitTreeState string
	GoVersion    string
}

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions versionSet
	HelmVersion helmVersion
}

// templateInfo is .Template: the file being rendered.
type templateInfo struct {
	Name     string // "packd/templates/deployment.yaml"
	BasePath string // "packd/templates"
}

// defaultAPIVersions are the built-in API group versions of Kubernetes 1.29,
// as `helm template` assumes without --api-versions (CRDs such as
// monitoring.coreos.com/v1 are not among them).
var defaultAPIVersions = []string{
	"v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1",
	"apiregistration.k8s.io/v1", "apps/v1", "authentication.k8s.io/v1",
	"authorization.k8s.io/v1", "autoscaling/v1", "autoscaling/v2", "batch/v1",
	"certificates.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"events.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1beta3",
	"networking.k8s.io/v1", "node.k8s.io/v1", "policy/v1",
	"rbac.authorization.k8s.io/v1", "scheduling.k8s.io/v1", "storage.k8s.io/v1",
}

// installOrder is Helm's releaseutil.InstallOrder: kinds are emitted in this
// order, unknown kinds last (alphabetically), and documents of one kind in
// template file order.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret",
	"SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
	"PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role",
	"RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
	"ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
	"StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
}

// stringList is a repeatable command-line flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	flags := flag.NewFlagSet("render", flag.ContinueOnError)
	var valueFiles, sets, apiVersions stringList
	flags.Var(&valueFiles, "f", "a values file merged over the chart's values.yaml (repeatable; later wins)")
	flags.Var(&valueFiles, "values", "same as -f")
	flags.Var(&sets, "set", "KEY=VALUE[,KEY=VALUE...] merged over the values files (repeatable)")
	flags.Var(&apiVersions, "api-versions", "an API version the cluster serves besides the built-in ones (repeatable)")
	name := flags.String("name", "release-name", "the release name")
	namespace := flags.String("namespace", "default", "the release namespace")
	kubeVersionFlag := flags.String("kube-version", "v1.29.0", "the Kubernetes version for .Capabilities")
	notesFile := flags.String("notes", "", "write the rendered templates/NOTES.txt to this file")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "usage: render [flags] CHART_DIR\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		flags.Usage()
		return errors.New("expected exactly one CHART_DIR after the flags")
	}
	chartDir := flags.Arg(0)

	chart, err := loadChart(chartDir)
	if err != nil {
		return err
	}
	values, err := loadValues(filepath.Join(chartDir, "values.yaml"), true)
	if err != nil {
		return err
	}
	for _, f := range valueFiles {
		v, err := loadValues(f, false)
		if err != nil {
			return err
		}
		mergeValues(values, v)
	}
	for _, s := range sets {
		v, err := parseSet(s)
		if err != nil {
			return err
		}
		mergeValues(values, v)
	}
	kube, err := parseKubeVersion(*kubeVersionFlag)
	if err != nil {
		return err
	}
	caps := capabilities{
		KubeVersion: kube,
		APIVersions: append(versionSet(append([]string{}, defaultAPIVersions...)), apiVersions...),
		HelmVersion: helmVersion{Version: "v3.14.0", GoVersion: "go1.19"},
	}
	funcs := sprig.TxtFuncMap()
	if chart.KubeVersion != "" {
		semverCompare := funcs["semverCompare"].(func(string, string) (bool, error))
		ok, err := semverCompare(chart.KubeVersion, kube.Version)
		if err != nil {
			return fmt.Errorf("Chart.yaml: kubeVersion %q: %v", chart.KubeVersion, err)
		}
		if !ok {
			return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
				chart.KubeVersion, kube.Version)
		}
	}
	r := &renderer{
		chartName: chart.Name,
		top: map[string]interface{}{
			"Values": values,
			"Release": release{Name: *name, Namespace: *namespace, Service: "Helm",
				IsInstall: true, Revision: 1},
			"Chart":        chart,
			"Capabilities": caps,
		},
	}
	if err := r.parse(chartDir, funcs); err != nil {
		return err
	}
	manifests, notes, err := r.renderAll()
	if err != nil {
		return err
	}
	if *notesFile != "" {
		if err := os.WriteFile(*notesFile, []byte(notes), 0o644); err != nil {
			return err
		}
	}
	for _, m := range manifests {
		if _, err := fmt.Fprintf(out, "---\n# Source: %s\n%s\n", m.source, m.content); err != nil {
			return err
		}
	}
	return nil
}

// loadChart reads CHART_DIR/Chart.yaml (apiVersion v2, name and version
// required, as Helm requires).
func loadChart(dir string) (*chartMetadata, error) {
	file := filepath.Join(dir, "Chart.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c chartMetadata
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	switch {
	case c.APIVersion != "v2":
		return nil, fmt.Errorf("%s: apiVersion must be v2 (Helm 3), got %q", file, c.APIVersion)
	case c.Name == "":
		return nil, fmt.Errorf("%s: name is required", file)
	case c.Version == "":
		return nil, fmt.Errorf("%s: version is required", file)
	}
	return &c, nil
}

// loadValues reads one values file into Helm's representation (see
// normalize). A missing chart values.yaml is an empty map.
func loadValues(file string, optional bool) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return map[string]interface{}{}, nil
		}
		return nil, err
	}
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := normalize(raw).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: the top level must be a mapping", file)
	}
	return m, nil
}

// normalize turns what yaml.v3 decoded into what Helm's values are after its
// YAML -> JSON -> Go trip: maps keyed by strings, every number a float64,
// timestamps left as the text that was written.
func normalize(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []interface{}:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case time.Time:
		if x.Equal(x.Truncate(24*time.Hour)) && x.Location() == time.UTC {
			return x.Format("2006-01-02")
		}
		return x.Format(time.RFC3339Nano)
	}
	return v
}

// mergeValues merges src into dst the way Helm coalesces user values over
// chart values: maps merge recursively, other values replace, a nil deletes.
func mergeValues(dst, src map[string]interface{}) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		srcMap, srcIsMap := v.(map[string]interface{})
		dstMap, dstIsMap := dst[k].(map[string]interface{})
		if srcIsMap && dstIsMap {
			mergeValues(dstMap, srcMap)
			continue
		}
		dst[k] = v
	}
}

// parseSet parses one --set argument: comma-separated KEY=VALUE pairs, KEY a
// dotted path ("\." and "\," escape a literal dot or comma), VALUE typed as
// Helm's strvals types it: true/false, null (any case), an integer not starting
// with 0 (int64), else a string.
func parseSet(arg string) (map[string]interface{}, error) {
	result := map[string]interface{}{}
	for _, pair := range splitUnescaped(arg, ',') {
		eq := strings.IndexByte(pair, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("--set %q: expected KEY=VALUE, got %q", arg, pair)
		}
		keyText, valueText := pair[:eq], unescape(pair[eq+1:])
		if strings.ContainsAny(keyText, "[]") {
			return nil, fmt.Errorf("--set %q: list indices are not supported by this renderer", arg)
		}
		keys := splitUnescaped(keyText, '.')
		node := result
		for i, k := range keys {
			k = unescape(k)
			if k == "" {
				return nil, fmt.Errorf("--set %q: empty key segment in %q", arg, keyText)
			}
			if i == len(keys)-1 {
				node[k] = typedSetValue(valueText)
				break
			}
			child, ok := node[k].(map[string]interface{})
			if !ok {
				child = map[string]interface{}{}
				node[k] = child
			}
			node = child
		}
	}
	return result, nil
}

func typedSetValue(s string) interface{} {
	switch {
	case strings.EqualFold(s, "true"):
		return true
	case strings.EqualFold(s, "false"):
		return false
	case strings.EqualFold(s, "null"):
		return nil
	case s == "0":
		return int64(0)
	}
	// strvals: a value that does not start with "0" and parses as an integer.
	if s != "" && s[0] != '0' {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return s
}

// splitUnescaped splits s at sep characters not preceded by a backslash,
// keeping the escapes (unescape removes them).
func splitUnescaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == sep {
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var kubeVersionPattern = regexp.MustCompile(`^v?(\d+)\.(\d+)(\.\d+)?$`)

func parseKubeVersion(s string) (kubeVersion, error) {
	m := kubeVersionPattern.FindStringSubmatch(s)
	if m == nil {
		return kubeVersion{}, fmt.Errorf("--kube-version %q: expected vMAJOR.MINOR[.PATCH]", s)
	}
	patch := m[3]
	if patch == "" {
		patch = ".0"
	}
	return kubeVersion{Version: "v" + m[1] + "." + m[2] + patch, Major: m[1], Minor: m[2]}, nil
}

// renderer holds one chart's parsed templates.
type renderer struct {
	chartName string
	top       map[string]interface{} // Values, Release, Chart, Capabilities
	root      *template.Template     // every file, each under its Helm name
	files     []string               // the Helm names, sorted
	// include nesting, by template name, against runaway recursion (Helm's
	// limit is 1000 too).
	includeDepth map[string]int
}

const maxIncludeDepth = 1000

// parse loads every file under CHART_DIR/templates as a template named
// "CHART/templates/RELPATH".
func (r *renderer) parse(chartDir string, funcs template.FuncMap) error {
	templatesDir := filepath.Join(chartDir, "templates")
	sources := map[string]string{}
	err := filepath.WalkDir(templatesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(templatesDir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Join(r.chartName, "templates", filepath.ToSlash(rel))
		sources[name] = string(data)
		r.files = append(r.files, name)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(r.files)
	r.includeDepth = map[string]int{}

	delete(funcs, "env")
	delete(funcs, "expandenv")
	for k, v := range helmFuncs() {
		funcs[k] = v
	}
	funcs["include"] = r.include
	funcs["tpl"] = r.tpl
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	r.root = template.New("gotpl").Funcs(funcs).Option("missingkey=zero")
	for _, name := range r.files {
		if _, err := r.root.New(name).Parse(sources[name]); err != nil {
			return err
		}
	}
	return nil
}

// dataFor is the top-level object while rendering the file `name`.
func (r *renderer) dataFor(name string) map[string]interface{} {
	data := make(map[string]interface{}, len(r.top)+1)
	for k, v := range r.top {
		data[k] = v
	}
	data["Template"] = templateInfo{Name: name, BasePath: path.Join(r.chartName, "templates")}
	return data
}

func (r *renderer) include(name string, data interface{}) (string, error) {
	if r.includeDepth[name] >= maxIncludeDepth {
		return "", fmt.Errorf("rendering template has a nested reference name: %s: unable to execute template", name)
	}
	r.includeDepth[name]++
	defer func() { r.includeDepth[name]-- }()
	var buf strings.Builder
	if err := r.root.ExecuteTemplate(&buf, name, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// tpl renders text as a template, with the chart's definitions available,
// named after the template that calls it (when data carries .Template).
func (r *renderer) tpl(text string, data interface{}) (string, error) {
	t, err := r.root.Clone()
	if err != nil {
		return "", err
	}
	name := "tpl"
	if m, ok := data.(map[string]interface{}); ok {
		if info, ok := m["Template"].(templateInfo); ok {
			name = info.Name
		}
	}
	t, err = t.New(name).Parse(text)
	if err != nil {
		return "", err
	}
	var buf strings.Builder
	if err := t.Execute(&buf, data); err != nil {
		return "", err
	}
	return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
}

// manifest is one YAML document of the output.
type manifest struct {
	source  string // the template's name
	content string
	kind    string
	order   int // the file's position, for a stable sort
}

// renderAll renders every non-partial template into manifests (in Helm's
// install order) and NOTES.txt into notes.
func (r *renderer) renderAll() ([]manifest, string, error) {
	var manifests []manifest
	notes := ""
	for i, name := range r.files {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") {
			continue
		}
		var buf strings.Builder
		if err := r.root.ExecuteTemplate(&buf, name, r.dataFor(name)); err != nil {
			return nil, "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			notes = text
			continue
		}
		docs, err := splitManifests(name, text)
		if err != nil {
			return nil, "", err
		}
		for _, d := range docs {
			d.order = i
			manifests = append(manifests, d)
		}
	}
	rank := map[string]int{}
	for i, k := range installOrder {
		rank[k] = i
	}
	sort.SliceStable(manifests, func(a, b int) bool {
		ka, aKnown := rank[manifests[a].kind]
		kb, bKnown := rank[manifests[b].kind]
		switch {
		case aKnown && bKnown:
			return ka < kb
		case aKnown != bKnown:
			return aKnown
		default:
			return manifests[a].kind < manifests[b].kind
		}
	})
	return manifests, notes, nil
}

var documentSeparator = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

// splitManifests cuts one rendered file into its YAML documents, dropping
// those with no content, and checks that each is a Kubernetes object.
func splitManifests(name, text string) ([]manifest, error) {
	var out []manifest
	for _, doc := range documentSeparator.Split(text, -1) {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		var head map[string]interface{}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("YAML parse error on %s: %v\n--- the document ---\n%s", name, err, doc)
		}
		if head == nil {
			continue // only comments
		}
		kind, _ := head["kind"].(string)
		apiVersion, _ := head["apiVersion"].(string)
		if kind == "" || apiVersion == "" {
			return nil, fmt.Errorf("%s: a document without apiVersion or kind:\n%s", name, doc)
		}
		out = append(out, manifest{source: name, content: doc, kind: kind})
	}
	return out, nil
}

// helmFuncs are the functions Helm adds to sprig's (engine/funcs.go), minus
// include, tpl and lookup, which need the renderer.
func helmFuncs() template.FuncMap {
	return template.FuncMap{
		"toYaml":        toYaml,
		"fromYaml":      fromYaml,
		"fromYamlArray": fromYamlArray,
		"toJson":        toJson,
		"fromJson":      fromJson,
		"fromJsonArray": fromJsonArray,
		"required": func(message string, v interface{}) (interface{}, error) {
			if v == nil {
				return v, errors.New(message)
			}
			if s, ok := v.(string); ok && s == "" {
				return v, errors.New(message)
			}
			return v, nil
		},
		"fail": func(message string) (string, error) { return "", errors.New(message) },
	}
}

// forOutput makes v print as Helm's toYaml prints it (through JSON): a
// float64 with an integral value is an integer, not 1e+06.
func forOutput(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, e := range x {
			m[k] = forOutput(e)
		}
		return m
	case []interface{}:
		l := make([]interface{}, len(x))
		for i, e := range x {
			l[i] = forOutput(e)
		}
		return l
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	}
	return v
}

// toYaml is Helm's: YAML with 2-space indentation and no final newline; an
// error renders as "".
func toYaml(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(forOutput(v)); err != nil {
		return ""
	}
	if err := enc.Close(); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYaml(s string) map[string]interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	m, ok := normalize(raw).(map[string]interface{})
	if !ok {
		return map[string]interface{}{}
	}
	return m
}

func fromYamlArray(s string) []interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return []interface{}{err.Error()}
	}
	l, ok := normalize(raw).([]interface{})
	if !ok {
		return []interface{}{}
	}
	return l
}

func toJson(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJson(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJsonArray(s string) []interface{} {
	var l []interface{}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return []interface{}{err.Error()}
	}
	return l
}
