%% @doc The socket "driver" epmdx_uds_dist hands to inet_tcp_dist's
%% generalized API: the functions inet_tcp_dist calls on its Driver
%% argument, over `local' family gen_tcp sockets.
-module(epmdx_uds_driver).

-export([family/0, connect/3, accept/1, send/2, send/3, recv/3,
         controlling_process/2, close/1, mask/2, parse_address/1]).

family() ->
    local.

%% Address is {local, Path} from epmdx_select (via address_please/3).
connect({local, _} = Address, 0, Opts) ->
    gen_tcp:connect(Address, 0, [local | [O || O <- Opts, applies(O)]]).

%% inet_dist_connect_options may hold IP options that a Unix socket rejects.
applies({K, _}) ->
    lists:member(K, [active, packet, sndbuf, recbuf, buffer, delay_send,
                     high_watermark, low_watermark, high_msgq_watermark,
                     low_msgq_watermark, send_timeout, send_timeout_close]);
applies(_) ->
    false.

accept(Listen) ->
    gen_tcp:accept(Listen).

send(S, Data) ->
    gen_tcp:send(S, Data).

%% The tick: an empty packet, sent even when the queue is busy.
send(S, Data, Opts) ->
    local_tcp:send(S, Data, Opts).

recv(S, Length, Timeout) ->
    gen_tcp:recv(S, Length, Timeout).

controlling_process(S, Pid) ->
    gen_tcp:controlling_process(S, Pid).

close(S) ->
    gen_tcp:close(S).

%% Only used with `-kernel check_ip true', which has no meaning here.
mask(_Mask, Address) ->
    Address.

parse_address(Host) ->
    inet:parse_address(Host).
