%% @doc The epmdx wire protocol (docs/protocol.md), as pure functions:
%% encoders return request bodies WITHOUT the u16 length prefix (the
%% sockets use `{packet, 2}`), decoders take reply bodies without their
%% length prefix. No I/O here; epmdx_epmd and epmdx_select own the sockets.
%%
%% Protocol names from the wire are mapped to atoms only through the fixed
%% table in proto_atom/1; anything else is `unknown' and is never turned
%% into an atom.
-module(epmdx_proto).

-export([alive3/4, alive3_reply/1,
         port_please3/2, port_please3_reply/1,
         names3/0, names3_reply/1,
         alive2/3, alive2_reply/1,
         port_please2/1, port2_reply/1,
         proto_atom/1, proto_name/1, known_protos/0,
         status_name/1, family/1]).

-define(ALIVE3_REQ, 88).
-define(ALIVE3_RESP, 118).
-define(PORT_PLEASE3_REQ, 90).
-define(PORT3_RESP, 119).
-define(NAMES3_REQ, 78).
-define(ALIVE2_REQ, 120).
-define(ALIVE2_X_RESP, 118).
-define(ALIVE2_RESP, 121).
-define(PORT_PLEASE2_REQ, 122).
-define(PORT2_RESP, 119).
-define(NORMAL_NODE, 77).
-define(FLAG_LEGACY, 1).

-type proto() :: inet_tcp | inet6_tcp | inet_tls | inet6_tls | uds.
-type transport() :: #{proto := proto() | unknown | legacy,
                       port := 0..65535,
                       extra := binary()}.
-type record() :: #{name := binary(),
                    type := byte(),
                    high := 0..65535,
                    low := 0..65535,
                    legacy := boolean(),
                    transports := [transport()]}.
-export_type([proto/0, transport/0, record/0]).

%% ------------------------------------------------------------------
%% Protocol names: the fixed table.

-spec known_protos() -> [proto()].
known_protos() -> [inet_tcp, inet6_tcp, inet_tls, inet6_tls, uds].

-spec proto_atom(binary()) -> proto() | unknown.
proto_atom(<<"inet_tcp">>) -> inet_tcp;
proto_atom(<<"inet6_tcp">>) -> inet6_tcp;
proto_atom(<<"inet_tls">>) -> inet_tls;
proto_atom(<<"inet6_tls">>) -> inet6_tls;
proto_atom(<<"uds">>) -> uds;
proto_atom(_) -> unknown.

-spec proto_name(proto()) -> binary().
proto_name(inet_tcp) -> <<"inet_tcp">>;
proto_name(inet6_tcp) -> <<"inet6_tcp">>;
proto_name(inet_tls) -> <<"inet_tls">>;
proto_name(inet6_tls) -> <<"inet6_tls">>;
proto_name(uds) -> <<"uds">>.

%% The address family a transport dials with.
-spec family(proto()) -> inet | inet6 | local.
family(inet_tcp) -> inet;
family(inet_tls) -> inet;
family(inet6_tcp) -> inet6;
family(inet6_tls) -> inet6;
family(uds) -> local.

-spec status_name(byte()) -> atom().
status_name(0) -> ok;
status_name(1) -> refused;
status_name(2) -> name_in_use;
status_name(3) -> proto_in_use;
status_name(4) -> too_many_transports;
status_name(5) -> bad_protocol;
status_name(6) -> node_mismatch;
status_name(7) -> capacity;
status_name(8) -> no_such_transport;
status_name(9) -> not_registered;
status_name(_) -> unknown_status.

%% ------------------------------------------------------------------
%% ALIVE3: register transports.

%% Transports: [{Proto, Port, Extra}].
%% A 4-tuple {P, Port, Extra, legacy} marks the transport legacy callers
%% see: bit 7 of its Plen (docs/protocol.md section 3.1).
-spec alive3(binary(), 0..65535, 0..65535,
             [{proto(), 0..65535, binary()} | {proto(), 0..65535, binary(), legacy}]) -> iodata().
alive3(Name, High, Low, Transports) when is_binary(Name) ->
    Ts = [case T of
              {P, Port, Extra} ->
                  [<<Port:16>>, len8(proto_name(P)), len16(Extra)];
              {P, Port, Extra, legacy} ->
                  PB = proto_name(P),
                  [<<Port:16, (byte_size(PB) bor 16#80)>>, PB, len16(Extra)]
          end || T <- Transports],
    [?ALIVE3_REQ, ?NORMAL_NODE, <<High:16, Low:16>>, len16(Name),
     length(Transports), Ts].

-spec alive3_reply(binary()) -> {ok, non_neg_integer()} | {error, atom()} | garbage.
alive3_reply(<<?ALIVE3_RESP, 0, Creation:32>>) -> {ok, Creation};
alive3_reply(<<?ALIVE3_RESP, Status, _:32>>) -> {error, status_name(Status)};
alive3_reply(_) -> garbage.

%% ------------------------------------------------------------------
%% PORT_PLEASE3: filtered lookup.

-spec port_please3(binary(), [proto()]) -> iodata().
port_please3(Name, Protos) ->
    [?PORT_PLEASE3_REQ, length(Protos), [len8(proto_name(P)) || P <- Protos],
     len16(Name)].

-spec port_please3_reply(binary()) -> {ok, record()} | not_found | {error, term()}.
port_please3_reply(<<?PORT3_RESP, 0, Rec/binary>>) ->
    case record(Rec) of
        {ok, R, <<>>} -> {ok, R};
        _ -> {error, garbage}
    end;
port_please3_reply(<<?PORT3_RESP, 1>>) -> not_found;
port_please3_reply(<<?PORT3_RESP, Status>>) -> {error, status_name(Status)};
port_please3_reply(_) -> {error, garbage}.

%% ------------------------------------------------------------------
%% NAMES3: every node with its transports.

-spec names3() -> iodata().
names3() -> [?NAMES3_REQ].

-spec names3_reply(binary()) -> {ok, non_neg_integer(), [record()]} | {error, garbage}.
names3_reply(<<EpmdPort:32, Count:32, Rest/binary>>) ->
    case records(Count, Rest, []) of
        {ok, Rs} -> {ok, EpmdPort, Rs};
        error -> {error, garbage}
    end;
names3_reply(_) -> {error, garbage}.

records(0, <<>>, Acc) -> {ok, lists:reverse(Acc)};
records(0, _, _) -> error;
records(N, Bin, Acc) ->
    case record(Bin) of
        {ok, R, Rest} -> records(N - 1, Rest, [R | Acc]);
        error -> error
    end.

%% NodeType u8 | High u16 | Low u16 | Flags u8 | Nlen u16 | Name | Count u8 | Transports
record(<<Type, High:16, Low:16, Flags, NLen:16, Name:NLen/binary, Count, Rest/binary>>) ->
    Legacy = Flags band ?FLAG_LEGACY =/= 0,
    case transports(Count, Rest, Legacy, []) of
        {ok, Ts, Tail} ->
            {ok, #{name => Name, type => Type, high => High, low => Low,
                   legacy => Legacy, transports => Ts}, Tail};
        error -> error
    end;
record(_) -> error.

transports(0, Rest, _Legacy, Acc) -> {ok, lists:reverse(Acc), Rest};
transports(N, <<Port:16, PLen, Proto:PLen/binary, ELen:16, Extra:ELen/binary, Rest/binary>>,
           Legacy, Acc) ->
    P = case Legacy of
            true -> legacy;
            false -> proto_atom(Proto)
        end,
    transports(N - 1, Rest, Legacy, [#{proto => P, port => Port, extra => Extra} | Acc]);
transports(_, _, _, _) -> error.

%% ------------------------------------------------------------------
%% The legacy commands, for stock daemons.

-spec alive2(binary(), 0..65535, {0..65535, 0..65535}) -> iodata().
alive2(Name, Port, {High, Low}) ->
    [?ALIVE2_REQ, <<Port:16>>, ?NORMAL_NODE, 0, <<High:16, Low:16>>, len16(Name),
     <<0:16>>].

-spec alive2_reply(binary()) -> {ok, non_neg_integer()} | {error, atom()} | garbage.
alive2_reply(<<?ALIVE2_X_RESP, 0, Creation:32>>) -> {ok, Creation};
alive2_reply(<<?ALIVE2_RESP, 0, Creation:16>>) -> {ok, Creation};
alive2_reply(<<?ALIVE2_X_RESP, _, _:32>>) -> {error, name_in_use};
alive2_reply(<<?ALIVE2_RESP, _, _:16>>) -> {error, name_in_use};
alive2_reply(_) -> garbage.

-spec port_please2(binary()) -> iodata().
port_please2(Name) -> [?PORT_PLEASE2_REQ, Name].

%% The whole reply (the daemon closes after it): a legacy record.
-spec port2_reply(binary()) -> {ok, record()} | not_found | {error, garbage}.
port2_reply(<<?PORT2_RESP, 0, Port:16, Type, _Proto, High:16, Low:16,
              NLen:16, Name:NLen/binary, ELen:16, Extra:ELen/binary, _/binary>>) ->
    {ok, #{name => Name, type => Type, high => High, low => Low, legacy => true,
           transports => [#{proto => legacy, port => Port, extra => Extra}]}};
port2_reply(<<?PORT2_RESP, R, _/binary>>) when R =/= 0 -> not_found;
port2_reply(_) -> {error, garbage}.

%% ------------------------------------------------------------------

len8(B) -> [byte_size(B), B].
len16(B) -> [<<(byte_size(B)):16>>, B].
