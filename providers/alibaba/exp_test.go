package alibaba

import (
	"context"
	"fmt"
	"net"
	"testing"

	alb "github.com/alibabacloud-go/alb-20200616/v2/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/tandemhq/tandem/spec"
)

func TestExp(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("T_AK_ID", "LTAIidXYZ")
	t.Setenv("T_AK_SECRET", "very-secret")
	t.Setenv("T_TOK", "tokTOK")
	cfg, err := Config("alb", spec.AlibabaProvider{Name: "p", Region: "cn-hangzhou", Endpoint: addr, Protocol: "http", SignatureVersion: "v2", AccessKeyIDEnv: "T_AK_ID", AccessKeySecretEnv: "T_AK_SECRET", SecurityTokenEnv: "T_TOK"})
	if err != nil { t.Fatal(err) }
	c, err := alb.NewClient(cfg)
	if err != nil { t.Fatal(err) }
	_, err = c.ListServerGroupServersWithContext(context.Background(), &alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1")}, &dara.RuntimeOptions{})
	fmt.Printf("%T\n%v\n", err, err)
}
