%% @doc Distribution over TCP/IPv6 (`-proto_dist epmdx_tcp6'): OTP's
%% inet6_tcp_dist, registered with epmdx as `inet6_tcp', and chosen per peer
%% by epmdx_select.
-module(epmdx_tcp6_dist).

-export([listen/1, listen/2, accept/1, accept_connection/5, setup/5, close/1,
         select/1, address/0, is_node_name/1, setopts/2, getopts/2]).

-define(PROTO, inet6_tcp).
-define(MOD, inet6_tcp_dist).

listen(Name) ->
    {ok, Host} = inet:gethostname(),
    listen(Name, Host).

listen(Name, Host) ->
    epmdx_epmd:with_transport(?PROTO, fun() -> ?MOD:listen(Name, Host) end).

accept(Listen) ->
    ?MOD:accept(Listen).

accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime) ->
    ?MOD:accept_connection(AcceptPid, Socket, MyNode, Allowed, SetupTime).

setup(Node, Type, MyNode, LongOrShortNames, SetupTime) ->
    ?MOD:setup(Node, Type, MyNode, LongOrShortNames, SetupTime).

close(Listen) ->
    ?MOD:close(Listen).

select(Node) ->
    epmdx_select:select(?PROTO, Node).

address() ->
    ?MOD:address().

is_node_name(Node) ->
    ?MOD:is_node_name(Node).

setopts(S, Opts) ->
    ?MOD:setopts(S, Opts).

getopts(S, Opts) ->
    ?MOD:getopts(S, Opts).
