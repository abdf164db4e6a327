// A tiny third-party EPMD client built on jinterface's OtpEpmd, driven by
// the interop tests (tests/interop/tests/third_party.rs).
//
// Usage: java -cp OtpErlang.jar:CLASSES EpmdProbe EPMD_PORT COMMAND ARGS...
//
//   publish ALIVE COOKIE  Opens a listen socket (OtpSelf on an ephemeral
//                         port), registers it with OtpEpmd.publishPort, then
//                         prints "published ALIVE PORT". Looks itself up with
//                         OtpEpmd.lookupPort and prints "lookup PORT". Then
//                         waits for a line (or EOF) on stdin, closes the
//                         registration with unPublishPort and prints
//                         "unpublished".
//   lookup NODE           Prints "port N" (OtpEpmd.lookupPort; 0 = unknown).
//   names                 Prints "names-begin", every line OtpEpmd.lookupNames
//                         returns for 127.0.0.1, then "names-end".
//
// The EPMD port is passed explicitly (OtpEpmd.useEpmdPort); jinterface would
// otherwise read ERL_EPMD_PORT, else use 4369. Exit status 0 on success, 2 on
// a usage error, 1 on any exception (printed to stderr).

import com.ericsson.otp.erlang.OtpEpmd;
import com.ericsson.otp.erlang.OtpPeer;
import com.ericsson.otp.erlang.OtpSelf;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetAddress;

public class EpmdProbe {
    public static void main(String[] args) {
        try {
            System.exit(run(args));
        } catch (Exception e) {
            System.err.println("EpmdProbe: " + e);
            e.printStackTrace();
            System.exit(1);
        }
    }

    private static int run(String[] args) throws Exception {
        if (args.length < 2) {
            return usage();
        }
        OtpEpmd.useEpmdPort(Integer.parseInt(args[0]));
        String cmd = args[1];
        if (cmd.equals("publish") && args.length == 4) {
            OtpSelf self = new OtpSelf(args[2], args[3], 0);
            if (!self.publishPort()) {
                System.out.println("publish-refused " + self.alive());
                return 1;
            }
            System.out.println("published " + self.alive() + " " + self.port());
            System.out.println("lookup " + OtpEpmd.lookupPort(new OtpPeer(self.node())));
            System.out.flush();
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
            in.readLine();
            self.unPublishPort();
            System.out.println("unpublished");
            return 0;
        }
        if (cmd.equals("lookup") && args.length == 3) {
            System.out.println("port " + OtpEpmd.lookupPort(new OtpPeer(args[2])));
            return 0;
        }
        if (cmd.equals("names") && args.length == 2) {
            System.out.println("names-begin");
            for (String line : OtpEpmd.lookupNames(InetAddress.getByName("127.0.0.1"))) {
                System.out.println(line);
            }
            System.out.println("names-end");
            return 0;
        }
        return usage();
    }

    private static int usage() {
        System.err.println("usage: EpmdProbe EPMD_PORT (publish ALIVE COOKIE | lookup NODE | names)");
        return 2;
    }
}
