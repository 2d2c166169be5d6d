package nacos

import (
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Grouped is the operator view of a service split into Tandem's groups.
type Grouped struct {
	A, B []providers.RegistryInstance
	// Unknown holds registrations whose address is in neither group.
	Unknown []providers.RegistryInstance
}

// ByGroup maps registry instances to groups A and B by IP and port, as the
// desired state lists them.
func ByGroup(groups spec.Groups, instances []providers.RegistryInstance) Grouped {
	var g Grouped
	for _, in := range instances {
		switch grp, ok := groups.GroupOf(in.IP, in.Port); {
		case !ok:
			g.Unknown = append(g.Unknown, in)
		case grp == spec.GroupA:
			g.A = append(g.A, in)
		default:
			g.B = append(g.B, in)
		}
	}
	return g
}

// Version is the running version an instance reports in its metadata under
// key (health.version.nacosMetadata), "" when it reports none.
func Version(in providers.RegistryInstance, key string) string {
	return in.Metadata[key]
}
