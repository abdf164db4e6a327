%% Erlang side of dist-bench: compiled with erlc at run time, loaded with -pa.
%% The same protocol as the Rust side: the sender sends {go, self(), N} and
%% then N binaries to {sink, Node}; the sink counts them and replies `done`.
-module(distbench).
-export([start_sink/0, send/4, connect_time/1]).

start_sink() ->
    Pid = spawn(fun sink/0),
    true = register(sink, Pid),
    ok.

sink() ->
    receive
        {go, From, N} when is_integer(N) ->
            count(N),
            From ! done;
        _ ->
            ok
    end,
    sink().

count(0) -> ok;
count(N) -> receive _ -> count(N - 1) end.

%% Sends N binaries of Size bytes to {sink, Node}; returns the nanoseconds
%% from the first send to the receipt of `done`, or `timeout`.
send(Node, Size, N, TimeoutMs) ->
    Bin = binary:copy(<<16#ab>>, Size),
    Dest = {sink, Node},
    T0 = erlang:monotonic_time(nanosecond),
    Dest ! {go, self(), N},
    send_loop(Dest, Bin, N),
    receive
        done -> erlang:monotonic_time(nanosecond) - T0
    after TimeoutMs -> timeout
    end.

send_loop(_, _, 0) -> ok;
send_loop(Dest, Bin, N) ->
    Dest ! Bin,
    send_loop(Dest, Bin, N - 1).

%% Time of net_kernel:connect_node/1 (EPMD lookup + connect + handshake).
connect_time(Node) ->
    T0 = erlang:monotonic_time(nanosecond),
    R = net_kernel:connect_node(Node),
    T1 = erlang:monotonic_time(nanosecond),
    {R, T1 - T0}.
