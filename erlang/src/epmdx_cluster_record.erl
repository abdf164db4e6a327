%% @doc The cluster records epmdx daemons publish in etcd
%% (docs/cluster.md), checked: pure functions for epmdx_cluster.
%%
%% A record is the JSON object under `/epmdx/NAME/nodes/<node>':
%% {"node", "host", "addresses": [...], "creation", "transports":
%% [{"proto", "port"}], "legacy"}, every field required and no other
%% (the checks of crates/epmdx-cluster's Record::parse_for). parse/2
%% refuses (with a reason, never a crash) a value that is not valid JSON, a
%% node that is not alive@host or does not match its key, a host that is
%% not the node's, a protocol listed twice, an unknown protocol or `uds' (records never carry
%% socket paths), a port outside 1..65535, and anything larger than the
%% bounds below. Protocol names become atoms only through
%% epmdx_proto:proto_atom/1; node names stay strings.
-module(epmdx_cluster_record).

-export([parse/2, parse_range/1]).

-define(MAX_RECORD, 16384).
-define(MAX_NODE, 255).
-define(MAX_ADDRESSES, 32).
-define(MAX_TRANSPORTS, 16).

-type member() :: #{node := string(), addresses := [inet:ip_address()],
                    transports := [#{proto := epmdx_proto:proto(), port := 1..65535}],
                    legacy := boolean(), creation := non_neg_integer()}.
-export_type([member/0]).

%% etcd's range reply: {ok, Revision, [{Key, Value, ModRevision}], More}.
-spec parse_range(binary()) -> {ok, integer() | undefined, [{binary(), binary(), binary()}],
                                boolean()} | {error, term()}.
parse_range(Body) ->
    case epmdx_json:decode(Body) of
        {ok, #{} = M} ->
            Rev = case M of
                      #{<<"header">> := #{<<"revision">> := R}} -> to_int(R);
                      _ -> undefined
                  end,
            Kvs = maps:get(<<"kvs">>, M, []),
            More = maps:get(<<"more">>, M, false) =:= true,
            case is_list(Kvs) of
                true -> {ok, Rev, [Kv || #{} = E <- Kvs, Kv <- [kv(E)], Kv =/= bad], More};
                false -> {error, kvs_not_a_list}
            end;
        {ok, _} -> {error, not_an_object};
        {error, _} = E -> E
    end.

kv(#{<<"key">> := K} = E) ->
    V = maps:get(<<"value">>, E, <<>>),
    try {base64:decode(K), base64:decode(V), maps:get(<<"mod_revision">>, E, <<>>)}
    catch _:_ -> bad
    end;
kv(_) ->
    bad.

to_int(B) when is_binary(B) ->
    try binary_to_integer(B) catch error:badarg -> undefined end;
to_int(I) when is_integer(I) -> I;
to_int(_) -> undefined.

%% A record's value, checked; KeyNode is the key's last part.
-spec parse(binary(), binary()) -> {ok, member()} | {error, string()}.
parse(_, V) when byte_size(V) > ?MAX_RECORD ->
    {error, fmt("larger than ~w bytes", [?MAX_RECORD])};
parse(KeyNode, V) ->
    case epmdx_json:decode(V) of
        {ok, #{} = J} ->
            try {ok, record(KeyNode, J)}
            catch throw:{bad, Why} -> {error, Why}
            end;
        {ok, _} -> {error, "not a JSON object"};
        {error, Why} -> {error, fmt("not valid JSON (~0tp)", [Why])}
    end.

bad(F, A) -> throw({bad, fmt(F, A)}).

-define(FIELDS, [<<"node">>, <<"host">>, <<"addresses">>, <<"creation">>,
                 <<"transports">>, <<"legacy">>]).

%% Every field required, no other field: the format epmdx writes
%% (crates/epmdx-cluster), read the same way as its own reader does.
record(KeyNode, J) ->
    case [K || K <- maps:keys(J), not lists:member(K, ?FIELDS)] of
        [] -> ok;
        [K | _] -> bad("unknown field ~0tp", [binary:part(K, 0, min(64, byte_size(K)))])
    end,
    case [F || F <- ?FIELDS, not maps:is_key(F, J)] of
        [] -> ok;
        [F | _] -> bad("no ~s field", [F])
    end,
    Node = case J of
               #{<<"node">> := N} when is_binary(N) -> N;
               _ -> bad("\"node\" is not a string", [])
           end,
    Node =:= KeyNode orelse bad("\"node\" ~0tp does not match its key", [Node]),
    Host = case byte_size(Node) =< ?MAX_NODE andalso string:split(Node, "@") of
               [A, H] when A =/= <<>>, H =/= <<>> ->
                   case binary:match(H, <<"@">>) of
                       nomatch -> H;
                       _ -> bad("\"node\" ~0tp is not alive@host", [Node])
                   end;
               _ -> bad("\"node\" ~0tp is not alive@host", [Node])
           end,
    maps:get(<<"host">>, J) =:= Host orelse bad("\"host\" is not the host of ~ts", [Node]),
    Addrs = case maps:get(<<"addresses">>, J) of
                L when is_list(L), length(L) =< ?MAX_ADDRESSES -> [address(A) || A <- L];
                _ -> bad("\"addresses\" is not a list of at most ~w strings",
                         [?MAX_ADDRESSES])
            end,
    Ts = case maps:get(<<"transports">>, J) of
             [_ | _] = T when length(T) =< ?MAX_TRANSPORTS -> [transport(X) || X <- T];
             _ -> bad("\"transports\" is not a list of 1 to ~w transports",
                      [?MAX_TRANSPORTS])
         end,
    Protos = [P || #{proto := P} <- Ts],
    length(Protos) =:= length(lists:usort(Protos)) orelse
        bad("a protocol is listed twice", []),
    Legacy = case maps:get(<<"legacy">>, J) of
                 B when is_boolean(B) -> B;
                 _ -> bad("\"legacy\" is not a boolean", [])
             end,
    Creation = case maps:get(<<"creation">>, J) of
                   C when is_integer(C), C >= 0, C < 1 bsl 32 -> C;
                   _ -> bad("\"creation\" is not a 32-bit unsigned integer", [])
               end,
    #{node => unicode:characters_to_list(Node), addresses => Addrs, transports => Ts,
      legacy => Legacy, creation => Creation}.

address(A) when is_binary(A), byte_size(A) =< 64 ->
    case inet:parse_strict_address(binary_to_list(A)) of
        {ok, Ip} -> Ip;
        _ -> bad("address ~0tp is not an IP address", [A])
    end;
address(A) ->
    bad("address ~0tp is not an IP address", [A]).

transport(#{<<"proto">> := P, <<"port">> := Port}) when is_binary(P) ->
    Proto = case epmdx_proto:proto_atom(P) of
                unknown -> bad("unknown protocol ~0tp", [binary:part(P, 0, min(64, byte_size(P)))]);
                uds -> bad("a uds transport (records never carry socket paths)", []);
                Known -> Known
            end,
    case Port of
        N when is_integer(N), N >= 1, N =< 65535 -> #{proto => Proto, port => N};
        _ -> bad("~s port ~0tp is not in 1..65535", [Proto, Port])
    end;
transport(T) ->
    bad("transport ~0tp is not {\"proto\": ..., \"port\": ...}", [T]).

fmt(F, A) -> lists:flatten(io_lib:format(F, A)).
