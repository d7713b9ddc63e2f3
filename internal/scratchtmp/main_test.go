package scr

import (
	"fmt"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

func TestScratch(t *testing.T) {
	for _, s := range []string{"INSERT INTO s.audit(a) VALUES (NEW.a)", "with x as (delete from t returning *) update u set a = f(1) from x", "merge into m using s on true when matched then delete", "CALL p(1)"} {
		j, err := pg_query.ParseToJSON(s)
		fmt.Println(j, err)
	}
}
