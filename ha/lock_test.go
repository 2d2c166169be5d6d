package ha

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// lockHelperEnv makes the test binary, re-executed, a daemon that holds the
// lock of a state directory until its stdin closes or it is killed.
const lockHelperEnv = "TANDEM_HA_LOCK_HELPER"

func lockHelper(dir string) {
	if _, err := Lock(dir); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func TestSecondLockOnTheSameStateDirFailsNamingDirAndHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	release, err := Lock(dir)
	require.NoError(t, err)

	_, err = Lock(dir)
	require.ErrorContains(t, err, "state directory "+dir+" is in use by another tandem daemon")
	require.ErrorContains(t, err, fmt.Sprintf("(pid %d on host ", os.Getpid()))

	require.NoError(t, release())
	again, err := Lock(dir)
	require.NoError(t, err, "a released lock can be taken again")
	require.NoError(t, again())
}

func TestLockIsReleasedWhenItsHolderDies(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)

	_, err = Lock(dir)
	require.ErrorContains(t, err, fmt.Sprintf("is in use by another tandem daemon (pid %d on host ", cmd.Process.Pid))

	require.NoError(t, cmd.Process.Kill())
	require.Error(t, cmd.Wait(), "the holder was killed, it did not release")
	release, err := Lock(dir)
	require.NoError(t, err, "the kernel released the dead holder's lock")
	require.NoError(t, release())
}

func TestLockOnAStateDirThatCannotExistFailsNamingIt(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := Lock(filepath.Join(file, "state"))
	require.ErrorContains(t, err, "creating state directory "+filepath.Join(file, "state"))
}
