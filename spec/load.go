package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Set is the whole desired state at one revision: every service of the
// repository, valid as a whole. A Set is only ever built from a fully valid
// load, so holding one means the commit may be applied.
type Set struct {
	Services []*Service // sorted by name
	byName   map[string]*Service
}

// Get returns the named service.
func (s *Set) Get(name string) (*Service, bool) {
	svc, ok := s.byName[name]
	return svc, ok
}

// Names lists the services in name order.
func (s *Set) Names() []string {
	names := make([]string, len(s.Services))
	for i, svc := range s.Services {
		names[i] = svc.Name
	}
	return names
}

// Load reads every .yaml and .yml file under dir of fsys (recursively),
// decodes each document strictly, applies defaults and validates each
// service, the set as a whole and, when cfg is not nil, the provider
// names the services refer to. It returns either a valid Set or Problems
// listing everything that is wrong; never both.
func Load(fsys fs.FS, dir string, cfg *Config) (*Set, error) {
	dir = path.Clean(strings.TrimPrefix(dir, "./"))
	b := &budget{}
	var files []string
	var ps Problems
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if b.entries++; b.entries > maxTreeEntries {
			ps = append(ps, Problem{File: dir, Msg: fmt.Sprintf("holds more than %d files and directories; keep only the desired state under it", maxTreeEntries)})
			return fs.SkipAll
		}
		if d.IsDir() && p != dir && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading desired state directory %s: %w", dir, err)
	}
	if b.entries > maxTreeEntries {
		files = nil
	}
	if len(files) > maxFiles {
		ps = append(ps, Problem{File: dir, Msg: fmt.Sprintf("holds %d .yaml and .yml files; the limit is %d", len(files), maxFiles)})
		files = nil
	}
	sort.Strings(files)
	var services []*Service
	for _, f := range files {
		if b.exhausted {
			break // the revision is refused already; reading on would only cost
		}
		data, err := readLimited(fsys, f, b)
		if err != nil {
			ps = append(ps, Problem{File: f, Msg: err.Error()})
			if b.bytes > MaxRevisionBytes {
				break
			}
			continue
		}
		svcs, fps := parseServices(f, data, b)
		ps = append(ps, fps...)
		services = append(services, svcs...)
	}
	if len(files) == 0 && len(ps) == 0 {
		ps = append(ps, Problem{File: dir, Msg: "no .yaml or .yml files: an empty desired state is refused (it would remove every service)"})
	}
	if len(ps) > 0 && b.exhausted {
		// Cross-file checks of a half-decoded revision would only add noise.
		return nil, b.finish(ps)
	}
	set := &Set{Services: services, byName: map[string]*Service{}}
	ps = append(ps, set.validate(cfg)...)
	if err := b.finish(ps); err != nil {
		return nil, err
	}
	sort.Slice(set.Services, func(i, j int) bool { return set.Services[i].Name < set.Services[j].Name })
	return set, nil
}

// readLimited reads one file within MaxFileBytes and what is left of the
// load's MaxRevisionBytes.
func readLimited(fsys fs.FS, name string, b *budget) ([]byte, error) {
	st, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("file is %d bytes; the limit is %d", st.Size(), MaxFileBytes)
	}
	if b.bytes += st.Size(); b.bytes > MaxRevisionBytes {
		return nil, fmt.Errorf("the .yaml and .yml files read so far, this one included, hold more than %d bytes, the limit for one revision", MaxRevisionBytes)
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("file is %d bytes; the limit is %d", len(data), MaxFileBytes)
	}
	return data, nil
}

// ParseServices decodes, defaults and validates the services of one file.
// Services with problems are still returned, so that cross-file checks can
// run; callers must treat any problem as fatal for the whole load. The
// file gets a load's whole budget (see MaxProblems): at most MaxProblems
// are listed, then one "... and N more problems" line.
func ParseServices(file string, data []byte) ([]*Service, Problems) {
	b := &budget{}
	svcs, ps := parseServices(file, data, b)
	if err := b.finish(ps); err != nil {
		return svcs, err.(Problems)
	}
	return svcs, nil
}

func parseServices(file string, data []byte, b *budget) ([]*Service, Problems) {
	docs, ps := splitDocuments(file, data, b)
	var out []*Service
	for _, doc := range docs {
		if b.exhausted {
			break
		}
		d := newDecoder(file, b)
		svc := &Service{}
		d.decode(doc, svc)
		svc.pos = d.pos
		svc.Source = Source{File: file, Line: doc.Line}
		ps = append(ps, d.problems...)
		if b.exhausted || (d.failed && svc.Name == "") {
			continue // too broken to take part in cross checks
		}
		svc.Default()
		// A field that could not be decoded is reported once, by the
		// decoder, not again by validation of its zero value.
		undecodable := map[string]bool{}
		for _, p := range d.problems {
			undecodable[p.Path] = true
		}
		for _, p := range svc.Validate() {
			if !undecodable[p.Path] {
				ps = append(ps, p)
			}
		}
		out = append(out, svc)
	}
	return out, ps
}

// validate runs the checks that need more than one service, or the config.
func (s *Set) validate(cfg *Config) Problems {
	var ps Problems
	owner := map[string]*Service{} // ip:port and LB id -> service, within one binding target
	for _, svc := range s.Services {
		if svc.Name == "" {
			continue
		}
		if prev, dup := s.byName[svc.Name]; dup {
			ps = append(ps, svc.Problem("service", "%q is already defined at %s", svc.Name, prev.Source))
			continue
		}
		s.byName[svc.Name] = svc
	}
	for _, svc := range s.Services {
		for _, g := range []Group{GroupA, GroupB} {
			for i, in := range svc.Groups.Get(g) {
				if in.IP == "" || in.Port == 0 {
					continue
				}
				if prev, dup := owner[in.Addr()]; dup && prev != svc {
					ps = append(ps, svc.Problem(fmt.Sprintf("groups.%s.instances[%d]", g, i),
						"%s is also an instance of service %q (%s)", in.Addr(), prev.Name, prev.Source))
				}
				owner[in.Addr()] = svc
			}
		}
		for i, a := range svc.After {
			if _, ok := s.byName[a]; !ok && a != svc.Name {
				ps = append(ps, svc.Problem("after["+strconv.Itoa(i)+"]", "unknown service %q", a))
			}
		}
		if cfg == nil {
			continue
		}
		ps = append(ps, cfg.checkPolicy(svc)...)
		for i, b := range svc.Traffic {
			if k := b.Kind(); k != "" && !cfg.HasProvider(k, b.Provider()) {
				ps = append(ps, svc.Problem(fmt.Sprintf("traffic[%d].%s", i, k),
					"no %s provider named %q in %s", k, b.Provider(), cfg.fileName()))
			}
		}
		if a := svc.Gates.Analysis; a != nil {
			// The server is resolved here, so that the daemon finds it by name.
			if p, err := cfg.prometheusFor(a.Prometheus); err != nil {
				ps = append(ps, svc.Problem("gates.analysis.prometheus", "%v", err))
			} else {
				a.Prometheus = p.Name
			}
		}
		if svc.Registry == nil || svc.Registry.Nacos == nil || svc.Registry.Nacos.Provider == "" {
			continue
		}
		name := svc.Registry.Nacos.Provider
		switch p, ok := cfg.nacosProvider(name); {
		case !ok:
			ps = append(ps, svc.Problem("registry.nacos.provider", "no nacos provider named %q in %s", name, cfg.fileName()))
		case p.Server == NacosServerRNacos && svc.Health.Version.NacosMetadata != "":
			ps = append(ps, svc.Problem("health.version.nacosMetadata",
				"cannot be read from r-nacos (nacos provider %q in %s): r-nacos keeps the metadata an address first registered with until 60s after the instance leaves, so a redeployed version would not show; use health.version.http",
				name, cfg.fileName()))
		}
	}
	ps = append(ps, s.cycles()...)
	return ps
}

// cycles reports each `after` cycle once, at the service that closes it.
func (s *Set) cycles() Problems {
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var ps Problems
	var stack []string
	var visit func(name string)
	visit = func(name string) {
		svc, ok := s.byName[name]
		if !ok {
			return
		}
		state[name] = active
		stack = append(stack, name)
		for i, dep := range svc.After {
			switch state[dep] {
			case unseen:
				visit(dep)
			case active:
				start := 0
				for j, n := range stack {
					if n == dep {
						start = j
					}
				}
				cycle := append(append([]string(nil), stack[start:]...), dep)
				ps = append(ps, svc.Problem("after["+strconv.Itoa(i)+"]", "ordering cycle: %s", strings.Join(cycle, " -> ")))
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if state[n] == unseen {
			visit(n)
		}
	}
	return ps
}

// ParseConfig decodes, defaults and validates a daemon configuration.
func ParseConfig(file string, data []byte) (*Config, error) {
	b := &budget{}
	docs, ps := splitDocuments(file, data, b)
	if len(ps) > 0 {
		return nil, ps.Err()
	}
	if len(docs) != 1 {
		return nil, Problems{{File: file, Msg: fmt.Sprintf("must hold exactly one YAML document, found %d", len(docs))}}
	}
	d := newDecoder(file, b)
	cfg := &Config{}
	d.decode(docs[0], cfg)
	cfg.pos, cfg.file = d.pos, file
	if d.failed {
		return nil, b.finish(d.problems)
	}
	cfg.Default()
	if err := cfg.Validate().Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadConfig reads and parses a configuration file.
func LoadConfig(file string) (*Config, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if st.Size() > MaxFileBytes {
		return nil, Problems{{File: file, Msg: fmt.Sprintf("file is %d bytes; the limit is %d", st.Size(), MaxFileBytes)}}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return ParseConfig(file, data)
}

// FileName is the file the config was read from, or "the daemon config".
func (c *Config) FileName() string { return c.fileName() }

func (c *Config) fileName() string {
	if c.file == "" {
		return "the daemon config"
	}
	return c.file
}

// AsProblems extracts the located problems from a Load or ParseConfig error.
func AsProblems(err error) (Problems, bool) {
	var ps Problems
	ok := errors.As(err, &ps)
	return ps, ok
}
