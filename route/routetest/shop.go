package routetest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// Customer is a shop's customer as the "Customer information" endpoint of
// ROBIN's dynamic integration answers it.
type Customer struct {
	Email string `json:"email_address"`
	Name  string `json:"name"`
	Phone string `json:"phone_number"`
	Since string `json:"customer_since"`
	Count int    `json:"order_count"`
	Spent string `json:"total_spent"`
}

// Shop is a fake of a shop's customer endpoint:
// GET /customers?phone=<number> answers the customer whose phone_number is
// exactly the number given, or 404 {"message":"Customer not found"}.
type Shop struct {
	Faults
	mu        sync.Mutex
	customers []Customer
}

// NewShop returns a shop knowing these customers.
func NewShop(customers ...Customer) *Shop { return &Shop{customers: customers} }

// Add adds a customer.
func (s *Shop) Add(c Customer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.customers = append(s.customers, c)
}

// Template is the CUSTOMER_LOOKUP_URL for a shop served at base.
func Template(base string) string { return strings.TrimRight(base, "/") + "/customers?phone={phone}" }

// ServeHTTP serves GET /customers.
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/customers" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	if !s.arrive(w, r, "customers") {
		return
	}
	phone := r.URL.Query().Get("phone")
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	for _, c := range s.customers {
		if c.Phone == phone {
			_ = json.NewEncoder(w).Encode(c)
			return
		}
	}
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"message":"Customer not found"}`))
}
